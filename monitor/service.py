"""The online monitor: ingest → decode → accumulate → database and result PVs.

One worker thread (the caller of :meth:`OnlineMonitor.run`) does all CA reads, numeric
work and database writes; pyepics callbacks only enqueue (see :mod:`mupnc.monitor.ingest`).
It flushes to the database once a second and, in between, updates the result PVs that
follow every window (the combined and charge asymmetries, the counters: the cheap
:meth:`~mupnc.monitor.analysis.run_analysis.RunAnalysis.newest`) every
:data:`RESULT_PUBLISH_INTERVAL` while windows arrive.

The monitor outlives its IOC: while the IOC is unreachable it keeps writing the database
and evaluating alarms (the data go stale, ``pv_disconnected``); a restarted IOC that
continues the run is followed (:mod:`mupnc.monitor.ingest`), one that serves another run ends
this run as ``aborted``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, update

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.contract import ContractError, blinded, enum_state
from mupnc.daq.scheme import RECORDED_ROTATOR, RotatorSettings
from mupnc.db.lease import MonitorHolder, take
from mupnc.db.models import Run
from mupnc.db.session import transaction
from mupnc.monitor.alarms.service import AlarmService
from mupnc.monitor.analysis.blinding import Blinder, ioc_blinder
from mupnc.monitor.analysis.results import RunResult
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.monitor.archiver import SlowControlArchiver
from mupnc.monitor.decoding.stream import ERROR_KINDS
from mupnc.monitor.feedback.service import FeedbackService
from mupnc.monitor.flow import ConsumerAck
from mupnc.monitor.ingest import BlockIngest
from mupnc.monitor.publisher import ResultPublisher, beam_values
from mupnc.monitor.recorder import RunRecorder
from mupnc.monitor.stop import StoppedError, StopRequest

log = logging.getLogger("mupnc.monitor")

RESULT_PUBLISH_INTERVAL = 0.25
"""Seconds between updates of the result PVs (``MON:*``) while windows arrive: the shifter
page follows them, so a window is on the screen within a second, while the database gets
one transaction per flush (a second)."""

STATE_POLL_TIMEOUT = 0.5
"""Seconds the once-per-flush look at RUN:STATE waits for an unreachable IOC."""
FEED_VALUES = 1 << 20
"""Window-channel values the analysis takes at once from the blocks received together (1 s
of MOLLER data, 8 MB joined): a replay or a refill delivers many blocks per call, and one
large feed costs a fraction of many small ones (``bench/bench_monitor.py``)."""


REQUIRED_PVS = ("RUN:NUMBER", "HEL:PATTERN", "HEL:DELAY", "BEAM:POLARIZATION", "DAQ:CHANNEL_MAP")
"""Run settings every DAQ serves (``docs/daq-contract.md``, :mod:`mupnc.daq.contract`)."""
OPTIONAL_PVS = (
    "RUN:BLIND",
    "RUN:BLIND_BOX",
    "RUN:FIRST_SEQ",
    "HEL:SCHEME",
    "HEL:ROTATOR_PATTERN",
    "HEL:KICK_PRECESSION",
    "HEL:WINDOW_RATE",
)
"""Run settings an IOC may not serve (an older or outside DAQ): each has a default."""
AS_STRING = ("HEL:PATTERN", "DAQ:CHANNEL_MAP", "HEL:SCHEME", "HEL:ROTATOR_PATTERN", "RUN:BLIND")
"""Settings read as text (enums by name, matched case-insensitively; the channel map's char
waveform)."""


class UnknownRunError(LookupError):
    """The IOC serves a run number the database does not know."""


def _setting_values(ingest: BlockIngest) -> dict:
    """Every run setting the IOC serves, looked up in parallel within one short timeout
    (twice: numbers, then the text of those that answered); ``ConnectionError`` naming a
    required one that did not answer."""
    values = ingest.optional_values(REQUIRED_PVS + OPTIONAL_PVS)
    values.update(ingest.optional_values([n for n in AS_STRING if n in values], as_string=True))
    for name in REQUIRED_PVS:
        if name not in values:
            raise ConnectionError(f"no answer from PV {ingest.prefix}{name}")
    missing = [name for name in OPTIONAL_PVS if name not in values]
    if missing:
        log.info("the IOC does not serve %s: defaults used", ", ".join(missing))
    return values


def _blinder(values: dict) -> Blinder:
    """The run's blinding: ``RUN:BLIND`` (0/1) and ``RUN:BLIND_BOX`` (fraction, 0 = default)
    from the IOC, the seed from ``MUPNC_BLINDING_SEED`` on the monitor's host (never a PV)."""
    blind = blinded(values)
    box = values.get("RUN:BLIND_BOX")
    if blind is None or (blind and box is None):
        log.error("RUN:BLIND cannot be read: the run is analysed BLINDED (default box)")
        blind, box = None, None
    return ioc_blinder(blind, os.environ.get("MUPNC_BLINDING_SEED"), box if blind else None)


def _rotator(values: dict) -> RotatorSettings:
    """Rotator pattern and kick precession (``HEL:ROTATOR_PATTERN``, ``HEL:KICK_PRECESSION``);
    for an IOC that does not serve them, those of runs recorded before they existed."""
    if "HEL:ROTATOR_PATTERN" not in values or "HEL:KICK_PRECESSION" not in values:
        return RECORDED_ROTATOR
    pattern = enum_state("HEL:ROTATOR_PATTERN", values["HEL:ROTATOR_PATTERN"]).lower()
    return RotatorSettings(pattern, float(values["HEL:KICK_PRECESSION"]))


def settings_from(values: dict) -> RunSettings:
    """The run settings from the PVs' values (by name after the prefix, enums as served, in
    any case: ``docs/daq-contract.md``); :class:`ContractError` for an enum state the
    contract does not know."""
    return RunSettings(
        run=int(values["RUN:NUMBER"]),
        pattern=enum_state("HEL:PATTERN", values["HEL:PATTERN"]),
        delay_patterns=int(values["HEL:DELAY"]),
        polarization=float(values["BEAM:POLARIZATION"]),
        channel_map=ChannelMap.from_json(values["DAQ:CHANNEL_MAP"]),
        blinder=_blinder(values),
        scheme=enum_state("HEL:SCHEME", values.get("HEL:SCHEME", "FAST")).lower(),
        first_seq=int(values.get("RUN:FIRST_SEQ", 0)),
        rotator=_rotator(values),
        window_rate=float(values["HEL:WINDOW_RATE"]) if "HEL:WINDOW_RATE" in values else None,
    )


def served_settings(config: dict, settings: RunSettings) -> dict:
    """The run row's columns for the settings the DAQ served (``config`` the stored run
    configuration): what reanalysis, export and replay read back, right also for a run
    registered with other settings than an outside DAQ serves (``mupnc run new``)."""
    channel_map = json.loads(settings.channel_map.to_json())
    served = {
        "pattern": settings.pattern,
        "delay_patterns": settings.delay_patterns,
        "scheme": settings.scheme,
        "polarization": settings.polarization,
        "channel_map": channel_map,
        "rotator_pattern": settings.rotator.pattern,
        "kick_precession": settings.rotator.degrees_per_turn,
    }
    if settings.window_rate is not None:
        served["window_rate"] = settings.window_rate
    columns = ("pattern", "delay_patterns", "scheme", "channel_map")
    return {"config": {**config, **served}, **{k: served[k] for k in columns}}


def _run_state(ingest: BlockIngest) -> str | None:
    """RUN:STATE (IDLE, RUNNING, ENDED, whatever the case served); None while the IOC does
    not answer within :data:`STATE_POLL_TIMEOUT`; :class:`ContractError` for another state."""
    try:
        state = ingest.caget("RUN:STATE", as_string=True, timeout=STATE_POLL_TIMEOUT)
    except ConnectionError:
        return None
    return enum_state("RUN:STATE", state)


class _RunStateWatch:
    """RUN:STATE once per flush; None while the IOC does not answer (logged once)."""

    def __init__(self, ingest: BlockIngest) -> None:
        self.ingest = ingest
        self.unreachable_since: float | None = None

    def poll(self) -> str | None:
        state = _run_state(self.ingest)
        if state is None:
            if self.unreachable_since is None:
                self.unreachable_since = time.monotonic()
                log.error(
                    "the IOC is unreachable (RUN:STATE gave no answer in %g s); waiting for it",
                    STATE_POLL_TIMEOUT,
                )
            return None
        if self.unreachable_since is not None:
            log.warning(
                "the IOC answers again after %.1f s", time.monotonic() - self.unreachable_since
            )
            self.unreachable_since = None
        return state


MonitorOutputs = tuple[ResultPublisher | None, AlarmService | None]
"""The result PVs (with the feedback switches, :class:`FeedbackRequests`) and the alarms."""


class OnlineMonitor:
    """Monitors one run of the IOC at ``prefix`` into ``engine``.

    ``outputs`` starts the result PVs and the alarm service once this monitor holds the
    run's lease (:mod:`mupnc.db.lease`), so a refused second monitor serves nothing."""

    def __init__(
        self,
        prefix: str,
        engine: Engine,
        minirun_patterns: int | None = None,
        flush_interval: float = 1.0,
        outputs: Callable[[], MonitorOutputs] | None = None,
        publish_interval: float = RESULT_PUBLISH_INTERVAL,
    ) -> None:
        self.prefix = prefix
        self.engine = engine
        self.minirun_patterns = minirun_patterns
        self.flush_interval = flush_interval
        self.publish_interval = publish_interval
        self.outputs = outputs

    def _wait_for_run(self, ingest: BlockIngest, stop: StopRequest) -> RunSettings:
        """The settings of the run the IOC serves, once it serves one this monitor has to
        take: running, or ended but not yet recorded to its end (its windows are still in
        the IOC's ring).  A run the database has ``ended`` is waited past (a monitor
        restarted by its service after the run ended must not take it over again), and the
        blocks of it received meanwhile are dropped: an IOC restarted into the next run
        serves that run's from block 0.  An IOC that goes away meanwhile is waited for."""
        told = None
        while True:
            try:
                values = self._run_to_take(ingest)
            except ConnectionError as err:
                log.info("the IOC went away while this monitor waited (%s): waiting for it", err)
                values = None
            if isinstance(values, dict):
                break
            if values is not None:
                ingest.drop_received()
                if told != values:
                    log.info("run %d ended and is recorded: waiting for the IOC's next run", values)
                    told = values
            if stop.wait(0.5):
                raise StoppedError("stopped while waiting for the IOC to start a run")
        ingest.check_layout()
        return settings_from(values)

    def _run_to_take(self, ingest: BlockIngest) -> dict | int | None:
        """The served run's settings if this monitor takes it, the run's number if it ended
        and is recorded, None while the IOC serves none (or does not answer)."""
        state = _run_state(ingest)
        if state not in ("RUNNING", "ENDED"):
            return None
        values = _setting_values(ingest)
        run = int(values["RUN:NUMBER"])
        if state == "RUNNING" or not self._recorded_to_its_end(run):
            return values
        return run

    def _recorded_to_its_end(self, run: int) -> bool:
        with transaction(self.engine) as session:
            row = session.get(Run, run)
            return row is not None and row.state == "ended"

    def run(self, stop: StopRequest) -> int | None:
        """Monitor one run until the IOC ends it or ``stop`` is set; returns the run number
        (None: stopped before the IOC began a run).

        The run is left ``ended`` (the IOC ended it) or ``aborted`` with the reason: this
        monitor was stopped (a later monitor resumes the run while the IOC still serves it),
        or the IOC was restarted into another run.  Raises :class:`mupnc.db.lease.LeaseHeldError`
        if another live monitor holds the run."""
        try:
            ingest = BlockIngest(self.prefix, stop=stop)
            settings = self._wait_for_run(ingest, stop)
        except StoppedError as why:
            log.info("%s (%s)", why, stop.reason)
            return None
        except ConnectionError as err:
            if not stop.is_set():
                raise
            log.info("stopped (%s) while the IOC went away: %s", stop.reason, err)
            return None
        holder = MonitorHolder()
        with transaction(self.engine) as session:
            if session.get(Run, settings.run) is None:
                raise UnknownRunError(
                    f"the IOC serves run {settings.run} ({self.prefix}RUN:NUMBER), which is not "
                    "in the database: register the run with 'mupnc run new' and serve the "
                    "number it prints (docs/daq-contract.md)"
                )
            take(session, settings.run, holder, datetime.now(UTC))
        publisher, alarms = self.outputs() if self.outputs is not None else (None, None)
        try:
            self._monitor(
                ingest,
                settings,
                RunRecorder(self.engine, settings.run, holder),
                stop,
                publisher,
                alarms,
            )
        finally:
            if alarms is not None:
                alarms.close()
            if publisher is not None:
                publisher.close()
        return settings.run

    def _monitor(
        self,
        ingest: BlockIngest,
        settings: RunSettings,
        recorder: RunRecorder,
        stop: StopRequest,
        publisher: ResultPublisher | None,
        alarms: AlarmService | None,
    ) -> None:
        ingest.run = settings.run
        analysis = RunAnalysis(settings, self.minirun_patterns)
        decoder = analysis.decoder
        resumed = recorder.resume(settings.channel_map, decoder)
        if resumed is not None:
            analysis.acc = resumed
            ingest.resume_at(recorder.stream_id, recorder.next_block, decoder.state.last_seq)
        with transaction(self.engine) as session:
            config = session.get(Run, settings.run).config or {}
            session.execute(
                update(Run)
                .where(Run.number == settings.run)
                .values(
                    state="running",
                    end=None,
                    end_reason=None,
                    blinded=settings.blinder.blinded,
                    blinding_checksum=settings.blinder.checksum or None,
                    **served_settings(config, settings),
                )
            )
        log.info(
            "monitoring run %d (%s, delay %d patterns, %d channels)%s",
            settings.run,
            settings.pattern,
            settings.delay_patterns,
            len(settings.channel_map.channels),
            "" if resumed is None else ", resumed",
        )
        if alarms is not None:
            alarms.start(settings.run, settings.channel_map, decoder.state, ingest.counters)
        archiver = SlowControlArchiver(self.prefix)
        feedback = FeedbackService(self.engine, settings.run, ingest.put_setpoint)
        requests = publisher.feedback_requests if publisher is not None else None

        def ingested(blocks: list) -> None:
            recorder.add_blocks(blocks)
            analysis.feed_blocks(blocks, FEED_VALUES)

        def newest_values(result: RunResult) -> dict:
            """The PVs that follow every window: the combined and charge asymmetries and
            the counters (:meth:`RunAnalysis.newest` gives them cheaply)."""
            return dict(
                run=settings.run,
                asym=result.combined.value,
                asym_err=result.combined.error,
                charge_asym=result.charge_asymmetry.value,
                patterns=result.patterns_good,
                windows=decoder.state.windows_released,
                decoder=decoder.lock_state,
                windows_held=decoder.windows_held,
                lost_windows=decoder.state.errors["missed_windows"],
            )

        def publish(publisher: ResultPublisher, result: RunResult) -> None:
            publisher.publish(
                **newest_values(result),
                chi2_ndf=result.chi2_ndf,
                estimator=result.estimator,
                helicity_errors=[decoder.state.errors[k] for k in ERROR_KINDS],
                **beam_values(result, analysis.acc.channel_map.names),
            )

        def flush(state: str, reason: str | None = None) -> bool:
            acc, _, result, _ = recordable = analysis.recordable()
            recorder.add_samples(archiver.drain())
            lock = (decoder.lock_state, decoder.windows_held)
            written = recorder.flush(*recordable, state, reason, lock)
            if publisher is not None:
                publish(publisher, result)
                publisher.publish_miniruns(result)
            if state == "running":
                feedback.update(acc, requests)
            if publisher is not None:
                publisher.publish_feedback(feedback)
            if alarms is not None:
                alarms.evaluate(decoder.state, ingest.counters, acc, result, feedback)
            return written

        ack = ConsumerAck(self.prefix)  # a replaying IOC paces itself by it
        ack.send(recorder.next_block - 1)
        next_flush = time.monotonic() + self.flush_interval
        next_publish, fresh = next_flush, False  # fresh: windows since the last publish
        ioc_state = _RunStateWatch(ingest)
        final, reason = "ended", "the IOC ended the run"
        while not stop.is_set():
            blocks = ingest.next_blocks(ack.wait)
            ingested(blocks)
            ack.send(recorder.next_block - 1)
            fresh = fresh or bool(blocks)
            if ingest.new_run is not None:
                final, reason = "aborted", f"the IOC was restarted into run {ingest.new_run}"
                break
            if ingest.incompatible is not None:
                final, reason = "aborted", f"{self.prefix}DAQ:BLOCK: {ingest.incompatible}"
                break
            now = time.monotonic()
            if now >= next_flush:
                next_flush += self.flush_interval
                if ioc_state.poll() == "ENDED":
                    break
                flush("running")
                next_publish, fresh = now + self.publish_interval, False
            elif publisher is not None and fresh and now >= next_publish:
                publisher.publish(**newest_values(analysis.newest()))
                next_publish, fresh = now + self.publish_interval, False
        else:  # left open for a later monitor: the windows still held are not given up
            final = "aborted"
            reason = f"monitor stopped ({stop.reason}); a new monitor resumes the run"
        if final == "ended":  # everything the IOC published is still in its ring: take it all
            last_block = int(ingest.caget("DAQ:BLOCK_NUMBER"))
            ingested(ingest.next_blocks(wait=0.05))
            while ingest.refill_pending:
                ingested(ingest.next_blocks(wait=0))
            for blocks in ingest.catch_up(last_block):
                ingested(blocks)
        if not stop.is_set():
            analysis.finish()
        while not flush(final, reason):  # the database is unreachable: keep trying
            if stop.wait(self.flush_interval):
                log.error("run %d: stopped before the database came back", settings.run)
                break
        if final == "ended":
            ack.finish()
        archiver.close()
        if alarms is not None:
            alarms.end_run(final)
        log.info(
            "run %d %s (%s): %d windows, %d lost",
            settings.run,
            final,
            reason,
            decoder.state.windows_released,
            decoder.state.errors["missed_windows"],
        )
        if ingest.incompatible is not None:
            raise ContractError(reason)
