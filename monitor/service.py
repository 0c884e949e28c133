"""The online monitor: ingest → decode → accumulate → database and result PVs.

One worker thread (the caller of :meth:`OnlineMonitor.run`) does all CA reads, numeric
work and database writes; pyepics callbacks only enqueue (see :mod:`mupnc.monitor.ingest`).

The monitor outlives its IOC: while the IOC is unreachable it keeps writing the database
and evaluating alarms (the data go stale, ``pv_disconnected``); a restarted IOC that
continues the run is followed (:mod:`mupnc.monitor.ingest`), one that serves another run ends
this run as ``aborted``.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from sqlalchemy import Engine, update

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.scheme import RECORDED_ROTATOR, RotatorSettings
from mupnc.db.models import Run
from mupnc.db.session import transaction
from mupnc.monitor.alarms.service import AlarmService
from mupnc.monitor.analysis.blinding import Blinder, ioc_blinder
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.monitor.archiver import SlowControlArchiver
from mupnc.monitor.decoding.stream import ERROR_KINDS
from mupnc.monitor.flow import ConsumerAck
from mupnc.monitor.ingest import BlockIngest
from mupnc.monitor.publisher import ResultPublisher
from mupnc.monitor.recorder import RunRecorder

log = logging.getLogger("mupnc.monitor")

STATE_POLL_TIMEOUT = 0.5
"""Seconds the once-per-flush look at RUN:STATE waits for an unreachable IOC."""


def _blinder(ingest: BlockIngest) -> Blinder:
    """The run's blinding: ``RUN:BLIND`` (0/1) and ``RUN:BLIND_BOX`` (fraction, 0 = default)
    from the IOC, the seed from ``MUPNC_BLINDING_SEED`` on the monitor's host (never a PV)."""
    blind: bool | None
    try:
        blind = int(ingest.caget("RUN:BLIND")) != 0
        box = float(ingest.caget("RUN:BLIND_BOX")) if blind else None
    except ConnectionError:
        log.error("RUN:BLIND cannot be read: the run is analysed BLINDED (default box)")
        blind, box = None, None
    return ioc_blinder(blind, os.environ.get("MUPNC_BLINDING_SEED"), box)


def _first_seq(ingest: BlockIngest) -> int:
    """``RUN:FIRST_SEQ``; 0 for an IOC that does not serve it."""
    try:
        return int(ingest.caget("RUN:FIRST_SEQ"))
    except ConnectionError:
        return 0


def _rotator(ingest: BlockIngest) -> RotatorSettings:
    """Rotator pattern and kick precession (``HEL:ROTATOR_PATTERN``, ``HEL:KICK_PRECESSION``);
    for an IOC that does not serve them, those of runs recorded before they existed."""
    try:
        pattern = str(ingest.caget("HEL:ROTATOR_PATTERN", as_string=True)).lower()
        degrees = float(ingest.caget("HEL:KICK_PRECESSION"))
    except ConnectionError:
        return RECORDED_ROTATOR
    return RotatorSettings(pattern, degrees)


def _window_rate(ingest: BlockIngest) -> float | None:
    """``HEL:WINDOW_RATE`` (Hz); None for an IOC that does not serve it."""
    try:
        return float(ingest.caget("HEL:WINDOW_RATE"))
    except ConnectionError:
        return None


def _scheme(ingest: BlockIngest) -> str:
    """The reversal scheme (``HEL:SCHEME``); "fast" for an IOC that does not serve it."""
    try:
        return str(ingest.caget("HEL:SCHEME", as_string=True)).lower()
    except ConnectionError:
        return "fast"


class _RunStateWatch:
    """RUN:STATE once per flush; None while the IOC does not answer (logged once)."""

    def __init__(self, ingest: BlockIngest) -> None:
        self.ingest = ingest
        self.unreachable_since: float | None = None

    def poll(self) -> str | None:
        try:
            state = self.ingest.caget("RUN:STATE", as_string=True, timeout=STATE_POLL_TIMEOUT)
        except ConnectionError as err:
            if self.unreachable_since is None:
                self.unreachable_since = time.monotonic()
                log.error("%s: the IOC is unreachable; waiting for it to come back", err)
            return None
        if self.unreachable_since is not None:
            log.warning(
                "the IOC answers again after %.1f s", time.monotonic() - self.unreachable_since
            )
            self.unreachable_since = None
        return state


class OnlineMonitor:
    def __init__(
        self,
        prefix: str,
        engine: Engine,
        minirun_patterns: int | None = None,
        flush_interval: float = 1.0,
        publisher: ResultPublisher | None = None,
        alarms: AlarmService | None = None,
    ) -> None:
        self.prefix = prefix
        self.engine = engine
        self.minirun_patterns = minirun_patterns
        self.flush_interval = flush_interval
        self.publisher = publisher
        self.alarms = alarms

    def _wait_for_run(self, ingest: BlockIngest, stop: threading.Event) -> RunSettings:
        while not stop.is_set():
            if ingest.caget("RUN:STATE", as_string=True) in ("RUNNING", "ENDED"):
                break
            stop.wait(0.2)
        return RunSettings(
            run=int(ingest.caget("RUN:NUMBER")),
            pattern=str(ingest.caget("HEL:PATTERN", as_string=True)),
            delay_patterns=int(ingest.caget("HEL:DELAY")),
            polarization=float(ingest.caget("BEAM:POLARIZATION")),
            channel_map=ChannelMap.from_json(ingest.caget("DAQ:CHANNEL_MAP", as_string=True)),
            blinder=_blinder(ingest),
            scheme=_scheme(ingest),
            first_seq=_first_seq(ingest),
            rotator=_rotator(ingest),
            window_rate=_window_rate(ingest),
        )

    def run(self, stop: threading.Event) -> int:
        """Monitor one run until the IOC ends it (or ``stop`` is set); returns the run number."""
        ingest = BlockIngest(self.prefix)
        settings = self._wait_for_run(ingest, stop)
        ingest.run = settings.run
        analysis = RunAnalysis(settings, self.minirun_patterns)
        decoder = analysis.decoder
        recorder = RunRecorder(self.engine, settings.run)
        resumed = recorder.resume(settings.channel_map, decoder)
        if resumed is not None:
            analysis.acc = resumed
            ingest.resume_at(recorder.stream_id, recorder.next_block, decoder.state.last_seq)
        with transaction(self.engine) as session:
            session.execute(
                update(Run)
                .where(Run.number == settings.run)
                .values(
                    state="running",
                    blinded=settings.blinder.blinded,
                    blinding_checksum=settings.blinder.checksum or None,
                )
            )
        log.info(
            "monitoring run %d (%s, delay %d patterns, %d channels)",
            settings.run,
            settings.pattern,
            settings.delay_patterns,
            len(settings.channel_map.channels),
        )
        if self.alarms is not None:
            self.alarms.start(settings.run, settings.channel_map, decoder.state, ingest.counters)
        archiver = SlowControlArchiver(self.prefix)

        def ingested(blocks: list) -> None:
            recorder.add_blocks(blocks)
            for block in blocks:
                analysis.feed(block)

        def flush(state: str) -> bool:
            acc, _, result, lost = recordable = analysis.recordable()
            recorder.add_samples(archiver.drain())
            written = recorder.flush(*recordable, state)
            if self.publisher is not None:
                self.publisher.publish(
                    run=settings.run,
                    asym=result.combined.value,
                    asym_err=result.combined.error,
                    chi2_ndf=result.chi2_ndf,
                    charge_asym=result.charge_asymmetry.value,
                    estimator=result.estimator,
                    patterns=result.patterns_good,
                    windows=decoder.state.windows_released,
                    decoder=decoder.lock_state,
                    windows_held=decoder.windows_held,
                    lost_windows=lost,
                    helicity_errors=[decoder.state.errors[k] for k in ERROR_KINDS],
                )
            if self.alarms is not None:
                self.alarms.evaluate(decoder.state, ingest.counters, acc, result)
            return written

        ack = ConsumerAck(self.prefix)  # a replaying IOC paces itself by it
        ack.send(recorder.next_block - 1)
        next_flush = time.monotonic() + self.flush_interval
        ioc_state = _RunStateWatch(ingest)
        final = "ended"
        while not stop.is_set():
            ingested(ingest.next_blocks(ack.wait))
            ack.send(recorder.next_block - 1)
            if ingest.new_run is not None:
                final = "aborted"  # the IOC was restarted into another run
                break
            if time.monotonic() >= next_flush:
                next_flush += self.flush_interval
                if ioc_state.poll() == "ENDED":
                    break
                flush("running")
        else:
            flush("running")  # stopped mid-run: leave the run open for a restarted monitor
            archiver.close()
            return settings.run
        if final == "ended":  # everything the IOC published is still in its ring; take it all
            last_block = int(ingest.caget("DAQ:BLOCK_NUMBER"))
            ingested(ingest.next_blocks(wait=0.05) + ingest.catch_up(last_block))
        analysis.finish()
        while not flush(final):  # the database is unreachable: keep trying
            if stop.wait(self.flush_interval):
                log.error("run %d: stopped before the database came back", settings.run)
                break
        archiver.close()
        if self.alarms is not None:
            self.alarms.end_run(final)
        log.info(
            "run %d %s: %d windows, %d lost",
            settings.run,
            final,
            decoder.state.windows_released,
            decoder.state.errors["missed_windows"],
        )
        return settings.run
