"""Writes the monitor's state to the database, one transaction per flush.

Rows hold absolute (cumulative) values and are upserted, so a retried or repeated flush
never double counts.  Only miniruns changed since the last flush are rewritten.  Each flush
also writes, in the same transaction, every block ingested since the last one (the
lossless recording, :mod:`mupnc.db.block_codec`), the restorable state of the changed miniruns and
a :class:`mupnc.db.models.MonitorCheckpoint`; so after a crash the database holds a consistent
cut, from which :meth:`RunRecorder.resume` continues the run without counting a window
twice: the accumulator comes back from its saved state, and the windows the decoder was
still holding (ingested, helicity not yet known) are fed again from the recording.

If the database cannot be reached, a flush keeps everything in memory, says so in the log
and is retried by the next one.  A monitor's recorder holds the run's lease
(:mod:`mupnc.db.lease`): each flush renews it in its transaction, and writes nothing if it
was lost; the run's last flush releases it.

Blocks are encoded for the recording on a thread of their own (:data:`_ENCODER`; the
compression and numpy release the GIL), off the worker thread's decode and analysis; a
flush waits for the encodings it writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from mupnc.daq.beamline import UNITS
from mupnc.daq.blocks import WindowBlock
from mupnc.daq.channel_map import ChannelMap
from mupnc.db.block_codec import decode, encode
from mupnc.db.lease import MonitorHolder, renew
from mupnc.db.models import (
    CUMULATIVE,
    DITHERED,
    REGRESSED,
    AsymmetryResult,
    BeamDifference,
    CoilResponse,
    DitherSensitivity,
    HelicityCounts,
    HelicityError,
    Minirun,
    ModulationCycle,
    MonitorCheckpoint,
    PolarizationResult,
    RecordedBlock,
    RegressionSlope,
    ResultSnapshot,
    Run,
    SlowControlSample,
)
from mupnc.db.session import UNREACHABLE, transaction, unreachable_message
from mupnc.db.store import upsert
from mupnc.monitor.analysis.accumulator import MINUS, PLUS, MinirunSums, RunAccumulator
from mupnc.monitor.analysis.modulation import MIN_COIL_WINDOWS, DitherCycle
from mupnc.monitor.analysis.results import RunResult
from mupnc.monitor.analysis.statistics import Measurement
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder
from mupnc.monitor.decoding.stream import DecoderState

log = logging.getLogger("mupnc.monitor.recorder")


def _new_encoder() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-encoder")


_ENCODER = _new_encoder()
"""Encodes ingested blocks for the recording, in the order they were added."""


def _encoder_of_a_forked_child() -> None:
    """A forked child has no thread of its parent's executor: it gets its own."""
    global _ENCODER
    _ENCODER = _new_encoder()


os.register_at_fork(after_in_child=_encoder_of_a_forked_child)

RETRY_LOG_EVERY = 10
"""While the database is unreachable, repeat the warning every this many failed flushes."""


def _float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _pack_state(state: dict) -> bytes:
    return zlib.compress(json.dumps(state, separators=(",", ":")).encode())


def _unpack_state(data: bytes) -> dict:
    return json.loads(zlib.decompress(data))


def _result_rows(run: int, minirun: int, result: RunResult) -> list[dict]:
    """One row per channel, ``combined`` (with the chi2/ndf of minirun means), ``charge``
    and each null asymmetry (measured, never blinded), the regressed ones (``regressed``,
    ``regressed:CHANNEL``) and the dithering-corrected ones (``dithered``,
    ``dithered:CHANNEL``); no value without a pattern."""
    means = [
        *result.channels.items(),
        ("combined", result.combined),
        ("charge", result.charge_asymmetry),
        *result.null.items(),
    ]
    for kind, combined, channels in (
        (REGRESSED, result.regressed, result.regressed_channels),
        (DITHERED, result.dithered, result.dithered_channels),
    ):
        if combined is not None:
            means += [(kind, combined), *((f"{kind}:{k}", m) for k, m in channels.items())]
    chi2 = {"combined": result.chi2_ndf, REGRESSED: result.regressed_chi2_ndf}
    return [
        dict(
            run=run,
            minirun=minirun,
            channel=name,
            value=_float(m.value) if m.n else None,
            error=_float(m.error),
            n=m.n,
            chi2_ndf=_float(chi2[name]) if name in chi2 else None,
            estimator=result.estimator if name == "combined" else None,
        )
        for name, m in means
    ]


def _beam_rows(run: int, minirun: int, result: RunResult) -> tuple[list[dict], list[dict]]:
    """The beam differences and the regression slopes of a minirun (or the run)."""
    differences = [
        dict(
            run=run,
            minirun=minirun,
            variable=name,
            value=_float(d.value),
            error=_float(d.error),
            width=_float(d.width),
            n=d.n,
            unit=UNITS[name],
        )
        for name, d in result.beam.items()
    ]
    slopes = [
        dict(
            run=run,
            minirun=minirun,
            channel=channel,
            variable=variable,
            value=_float(m.value),
            error=_float(m.error),
            n=m.n,
        )
        for (channel, variable), m in result.slopes.items()
    ]
    return differences, slopes


def _sensitivity_rows(
    run: int,
    cycle: int,
    sensitivities: dict[tuple[str, str], Measurement],
    differences: dict[tuple[str, str], Measurement],
) -> list[dict]:
    rows = []
    for (channel, variable), m in sensitivities.items():
        d = differences.get((channel, variable))
        rows.append(
            dict(
                run=run,
                cycle=cycle,
                channel=channel,
                variable=variable,
                value=_float(m.value),
                error=_float(m.error),
                n=m.n,
                difference=None if d is None else _float(d.value),
                difference_error=None if d is None else _float(d.error),
            )
        )
    return rows


def _polarization_row(run: int, minirun: int, result: RunResult) -> list[dict]:
    """The measured polarization of a minirun's (or the run's) result; none without a
    polarimeter."""
    p = result.polarization
    if p is None:
        return []
    configured = result.configured_combined
    return [
        dict(
            run=run,
            minirun=minirun,
            plus=_float(p.plus.value),
            plus_error=_float(p.plus.error),
            minus=_float(p.minus.value),
            minus_error=_float(p.minus.error),
            effective=_float(p.effective.value),
            effective_error=_float(p.effective.error),
            flip_quality=_float(p.flip_quality.value),
            flip_quality_error=_float(p.flip_quality.error),
            balance_measured=_float(p.balance_measured),
            forward_counts=p.forward,
            backward_counts=p.backward,
            n=p.plus.n,
            configured_value=None if configured is None else _float(configured.value),
            configured_error=None if configured is None else _float(configured.error),
        )
    ]


def _response_rows(run: int, cycle: DitherCycle) -> list[dict]:
    return [
        dict(
            run=run,
            cycle=cycle.cycle,
            coil=coil,
            kind=kind,
            target=target,
            value=_float(m.value),
            error=_float(m.error),
            n=m.n,
        )
        for kind, responses in (("beam", cycle.response), ("detector", cycle.detector_response))
        for (coil, target), m in responses.items()
    ]


def _modulation_rows(run: int, result: RunResult, acc: RunAccumulator) -> tuple[list, list, list]:
    """The modulation cycles with windows in a changed minirun (a cycle may span two), their
    coils' responses and their sensitivities, then the run's sensitivities as cycle
    :data:`CUMULATIVE`."""
    touched = {cycle for i in acc.dirty for cycle, _ in acc.miniruns[i].modulation.cells}
    cycles, responses, sensitivities = [], [], []
    for c in result.dither_cycles:
        if c.cycle not in touched:
            continue
        cycles.append(
            dict(
                run=run,
                cycle=c.cycle,
                minirun=c.minirun,
                windows=sum(c.windows.values()),
                coils=sum(1 for n in c.windows.values() if n >= MIN_COIL_WINDOWS),
                dead_coils=",".join(c.dead_coils),
                skipped=c.skipped or None,
            )
        )
        responses += _response_rows(run, c)
        sensitivities += _sensitivity_rows(run, c.cycle, c.sensitivities, c.regression_difference)
    sensitivities += _sensitivity_rows(
        run, CUMULATIVE, result.dither_sensitivities, result.dither_difference
    )
    return cycles, responses, sensitivities


def _count_rows(run: int, m: MinirunSums, names: list[str]) -> list[dict]:
    rows = []
    for c, name in enumerate(names):
        for slot, helicity in ((PLUS, 1), (MINUS, -1)):
            rows.append(
                dict(
                    run=run,
                    minirun=m.index,
                    channel=name,
                    helicity=helicity,
                    counts=int(m.counts[slot, c]),
                    windows=int(m.windows[slot]),
                    beam_monitor=float(m.beam_monitor[slot]),
                )
            )
        rows.append(
            dict(
                run=run,
                minirun=m.index,
                channel=name,
                helicity=0,
                counts=int(m.undecoded_counts[c]),
                windows=m.undecoded_windows,
                beam_monitor=0.0,
            )
        )
    return rows


def _block_row(run: int, block: WindowBlock) -> dict:
    return dict(
        run=run,
        stream_id=block.stream_id,
        block_number=block.block_number,
        first_seq=int(block.seq[0]) if block.n_windows else -1,
        last_seq=int(block.seq[-1]) if block.n_windows else -1,
        n_windows=block.n_windows,
        n_channels=block.n_channels,
        payload=encode(block),
    )


def _tail(block: WindowBlock, n: int) -> WindowBlock:
    """The last ``n`` windows of ``block``."""
    start = block.n_windows - n
    per_window = {
        f.name: getattr(block, f.name)[start:]
        for f in dataclasses.fields(block)
        if f.name not in ("stream_id", "block_number")
    }
    return dataclasses.replace(block, **per_window)


class RunRecorder:
    """Everything the monitor writes for one run (see the module docstring)."""

    def __init__(self, engine: Engine, run: int, holder: MonitorHolder | None = None) -> None:
        self.engine = engine
        self.run = run
        self.holder = holder
        """The lease this recorder renews at every flush (None: no lease, e.g. offline)."""
        self.stream_id = 0
        self.next_block = 0
        """Number of the first block not yet handed to :meth:`add_blocks`."""
        self._blocks: list[Future[dict]] = []  # blocks (being) encoded, not yet written
        self._samples: list[dict] = []  # slow-control samples not yet written
        self._failures = 0

    @property
    def buffered_blocks(self) -> int:
        return len(self._blocks)

    def add_blocks(self, blocks: Iterable[WindowBlock]) -> None:
        """Queue ingested blocks (in order) for the recording; written by the next flush."""
        for block in blocks:
            self._blocks.append(_ENCODER.submit(_block_row, self.run, block))
            self.stream_id, self.next_block = block.stream_id, block.block_number + 1

    def add_samples(self, rows: list[dict]) -> None:
        """Queue slow-control samples (:mod:`mupnc.monitor.archiver` rows) for the next flush."""
        self._samples.extend(rows)

    def flush(
        self,
        acc: RunAccumulator,
        decoder: DecoderState,
        result: RunResult,
        lost_windows: int,
        state: str,
        end_reason: str | None = None,
        decoder_lock: tuple[str, int] | None = None,
    ) -> bool:
        """Write everything since the last flush atomically; False if the database could
        not be reached (nothing is lost: the next flush writes it).  ``end_reason`` says
        why an ended or aborted run stopped; ``decoder_lock`` is the decoder's
        ``(lock_state, windows_held)`` for the snapshot.  Raises
        :class:`mupnc.db.lease.LeaseLostError` (nothing written) if the lease was taken over."""
        try:
            with transaction(self.engine) as session:
                self._write(
                    session, acc, decoder, result, lost_windows, state, end_reason, decoder_lock
                )
        except UNREACHABLE as err:
            self._failures += 1
            if self._failures % RETRY_LOG_EVERY == 1:
                log.warning(
                    "%s; run %d: buffering %d blocks in memory, retrying at every flush",
                    unreachable_message(self.engine, err),
                    self.run,
                    len(self._blocks),
                )
            return False
        if self._failures:
            log.warning(
                "database reachable again after %d failed flushes; run %d: wrote %d buffered "
                "blocks",
                self._failures,
                self.run,
                len(self._blocks),
            )
        self._failures = 0
        self._written(acc)
        return True

    def write(
        self,
        session: Session,
        acc: RunAccumulator,
        decoder: DecoderState,
        result: RunResult,
        lost_windows: int,
        state: str,
        end_reason: str | None = None,
    ) -> None:
        """What :meth:`flush` writes, in the caller's transaction (e.g. with the run's row)."""
        self._write(session, acc, decoder, result, lost_windows, state, end_reason)
        self._written(acc)

    def _written(self, acc: RunAccumulator) -> None:
        """Forget what was just committed."""
        self._blocks, self._samples = [], []
        acc.dirty.clear()

    def _write(
        self,
        session: Session,
        acc: RunAccumulator,
        decoder: DecoderState,
        result: RunResult,
        lost_windows: int,
        state: str,
        end_reason: str | None = None,
        decoder_lock: tuple[str, int] | None = None,
    ) -> None:
        run, names = self.run, acc.channel_map.names
        minirun_rows, count_rows, result_rows, difference_rows, slope_rows = [], [], [], [], []
        polarization_rows: list[dict] = []
        for index in sorted(acc.dirty):
            m = acc.miniruns[index]
            own = result.miniruns[index]
            minirun_rows.append(
                dict(
                    run=run,
                    index=index,
                    patterns_good=m.patterns_good,
                    state=_pack_state(m.state()),
                    patterns_beam_cut=m.patterns_beam_cut,
                    patterns_modulation=m.patterns_modulation,
                    regression_note=own.regression_skipped or None,
                )
            )
            count_rows += _count_rows(run, m, names)
            result_rows += _result_rows(run, index, own)  # blinded alike
            differences, slopes = _beam_rows(run, index, own)
            difference_rows += differences
            slope_rows += slopes
            polarization_rows += _polarization_row(run, index, own)
        result_rows += _result_rows(run, CUMULATIVE, result)
        differences, slopes = _beam_rows(run, CUMULATIVE, result)
        difference_rows += differences
        slope_rows += slopes
        polarization_rows += _polarization_row(run, CUMULATIVE, result)
        cycle_rows, response_rows, sensitivity_rows = _modulation_rows(run, result, acc)
        error_rows = [dict(run=run, kind=k, count=v) for k, v in decoder.errors.items()]
        now = datetime.now(UTC)
        if self.holder is not None:
            renew(session, run, self.holder, now)
        blocks = [{**row.result(), "run": run} for row in self._blocks]  # may be renumbered
        upsert(session, RecordedBlock, blocks, ("run", "stream_id", "block_number"))
        upsert(session, Minirun, minirun_rows, ("run", "index"))
        upsert(session, HelicityCounts, count_rows, ("run", "minirun", "channel", "helicity"))
        upsert(session, AsymmetryResult, result_rows, ("run", "minirun", "channel"))
        upsert(session, BeamDifference, difference_rows, ("run", "minirun", "variable"))
        upsert(session, RegressionSlope, slope_rows, ("run", "minirun", "channel", "variable"))
        upsert(session, PolarizationResult, polarization_rows, ("run", "minirun"))
        upsert(session, ModulationCycle, cycle_rows, ("run", "cycle"))
        upsert(session, CoilResponse, response_rows, ("run", "cycle", "coil", "kind", "target"))
        upsert(
            session, DitherSensitivity, sensitivity_rows, ("run", "cycle", "channel", "variable")
        )
        upsert(session, HelicityError, error_rows, ("run", "kind"))
        if self._samples:
            session.execute(insert(SlowControlSample), self._samples)
        header = acc.header_state()  # each minirun's is saved with its row
        checkpoint = dict(
            run=run,
            time=now,
            stream_id=self.stream_id,
            next_block=self.next_block,
            accumulator=header,
            decoder=dataclasses.asdict(decoder),
        )
        upsert(session, MonitorCheckpoint, [checkpoint], ("run",))
        session.add(
            ResultSnapshot(
                run=run,
                time=now,
                patterns_good=result.patterns_good,
                windows=decoder.windows_released,
                lost_windows=lost_windows,
                value=_float(result.combined.value),
                error=_float(result.combined.error),
                charge_asymmetry=_float(result.charge_asymmetry.value),
                decoder=None if decoder_lock is None else decoder_lock[0],
                windows_held=None if decoder_lock is None else decoder_lock[1],
                regressed=None if result.regressed is None else _float(result.regressed.value),
                regressed_error=None
                if result.regressed is None
                else _float(result.regressed.error),
            )
        )
        values = dict(
            state=state,
            windows=decoder.windows_released,
            lost_windows=lost_windows,
            last_seq=decoder.last_seq,
        )
        if state in ("ended", "aborted"):
            values.update(end=now, end_reason=end_reason, monitor_token=None)
        session.execute(update(Run).where(Run.number == run).values(**values))

    def resume(
        self, channel_map: ChannelMap, decoder: HelicityDecoder | RotatorDecoder
    ) -> RunAccumulator | None:
        """Continue a run a previous monitor left off: the restored accumulator, with the
        windows the previous decoder was still holding fed again into ``decoder`` (a new
        one); None if this run has no checkpoint.  Afterwards :attr:`next_block` is the
        first block to ingest."""
        with transaction(self.engine) as session:
            checkpoint = session.get(MonitorCheckpoint, self.run)
            if checkpoint is None:
                return None
            saved = dict(checkpoint.decoder)
            minirun_states = session.scalars(
                select(Minirun.state).where(Minirun.run == self.run).order_by(Minirun.index)
            ).all()
            held = saved["windows_seen"] - saved["windows_released"]
            blocks = self._recorded_tail(session, held)
            self.stream_id, self.next_block = checkpoint.stream_id, checkpoint.next_block
            saved_at, header = checkpoint.time, dict(checkpoint.accumulator)
        # one minirun's state unpacked at a time (as lists of floats, ~20k of them, they
        # would otherwise all be alive at once: 50 MB after 24 minutes at MOLLER scale)
        unpacked = (_unpack_state(s) for s in minirun_states)
        acc = RunAccumulator.from_state(channel_map, {**header, "miniruns": unpacked})
        # The held windows were seen, checked and counted (errors) before the restart; the
        # new decoder must see them again to decode them, but not count them twice.
        first_seq = int(blocks[0].seq[0]) if blocks else saved["last_seq"] + 1
        errors = {**decoder.state.errors, **saved["errors"]}
        decoder.state = DecoderState(
            **{**saved, "windows_seen": saved["windows_seen"] - held, "last_seq": first_seq - 1}
        )
        for block in blocks:
            acc.add(decoder.feed(block))
        decoder.state.errors = errors
        log.info(
            "run %d: resumed from the checkpoint of %s at block %d (%d held windows fed again)",
            self.run,
            saved_at.isoformat(),
            self.next_block,
            held,
        )
        return acc

    def _recorded_tail(self, session: Session, windows: int) -> list[WindowBlock]:
        """The last ``windows`` recorded windows of the run (of any stream), as blocks in
        order; read a few blocks at a time from the end (PostgreSQL's driver would fetch a
        whole result at once: the run's entire recording)."""
        blocks, missing, before = [], windows, None
        while missing > 0:
            query = select(RecordedBlock.n_windows, RecordedBlock.payload, RecordedBlock.first_seq)
            query = query.where(RecordedBlock.run == self.run)
            if before is not None:
                query = query.where(RecordedBlock.first_seq < before)
            rows = session.execute(query.order_by(RecordedBlock.first_seq.desc()).limit(8)).all()
            if not rows:
                raise RuntimeError(f"run {self.run}: recording lacks {missing} held windows")
            for n_windows, payload, first_seq in rows:
                if missing <= 0:
                    break
                blocks.append(_tail(decode(payload), min(missing, n_windows)))
                missing -= n_windows
                before = first_seq
        return blocks[::-1]
