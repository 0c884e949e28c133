"""``mupnc sim`` and ``mupnc reanalyze``: recorded runs made and analysed without IOCs.

``sim`` drives the simulator at full speed and records every block, in blocks of the live
IOC's size, so the run it records replays and reports like a live one; the monitor's
numeric core (:class:`mupnc.monitor.analysis.run_analysis.RunAnalysis`) takes them a second of data
at a time (the analysis does not depend on the blocks).

``reanalyze`` feeds a run's recording through the same core.  Its report is written by the
monitor's own writer into a private in-memory SQLite database and read back with
:func:`mupnc.db.summary.run_summary`, the code of ``mupnc report``: with the run's own settings
the analysis fields equal the original report exactly.  Nothing is written to the run's
database.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool
from tqdm import tqdm

from mupnc.daq.helicity import pattern_shape
from mupnc.db.models import Base, Run
from mupnc.db.recording_reader import BATCH_BLOCKS, recorded_blocks, recording_info
from mupnc.db.session import make_engine, require_schema, transaction
from mupnc.db.summary import run_summary
from mupnc.errors import UsageError
from mupnc.monitor.analysis.cuts import LowBeamCut
from mupnc.monitor.analysis.results import chosen_variables
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.feedback.service import SETPOINT_PVS, FeedbackService, Writer
from mupnc.monitor.recorded_settings import run_blinding, run_settings
from mupnc.monitor.recorder import RunRecorder
from mupnc.planner import beside_the_planner
from mupnc.sim.source import WindowSource

FLUSH_SECONDS = 1.0
"""Wall-clock seconds between two database flushes of ``mupnc sim`` (as the monitor)."""


def simulate(args: argparse.Namespace) -> int:
    """Simulate, analyse and record a run (source "sim"); prints its number."""
    from mupnc.runs import new_run, run_feedback, source_config

    config = source_config(args)
    wanted = args.windows if args.windows is not None else args.seconds * config.window_rate
    size = int(pattern_shape(config.pattern).size)
    total = max(1, math.ceil(wanted / size)) * size  # a run ends on a pattern boundary
    per_block = max(1, math.ceil(config.window_rate / args.block_rate))
    number = new_run(args.db, config, source="sim", feedback=run_feedback(args, config))
    engine = make_engine(args.db)
    with transaction(engine) as session:
        settings = run_settings(session.get(Run, number))
    source = WindowSource(config, stream_id=int(time.time()) & 0x7FFFFFFF)
    analysis = RunAnalysis(settings, args.minirun)
    recorder = RunRecorder(engine, number)
    feedback = FeedbackService(engine, number, simulated_setpoints(source))
    next_flush = time.monotonic() + FLUSH_SECONDS
    state = "ended"
    unanalysed: list = []  # blocks recorded, not yet fed to the analysis
    try:
        with tqdm(total=total, unit=" windows", unit_scale=True, disable=None) as bar:
            while source.next_seq < total:
                n = min(per_block, total - source.next_seq)
                block = source.next_block_of(n).block
                recorder.add_blocks([block])
                unanalysed.append(block)
                bar.update(n)
                if len(unanalysed) * per_block >= config.window_rate:  # a second of data
                    analysis.feed_blocks(unanalysed)
                    unanalysed = []
                    feedback.update(analysis.acc)  # the loops act on the next blocks
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + FLUSH_SECONDS
                    analysis.feed_blocks(unanalysed)
                    unanalysed = []
                    recorder.flush(*analysis.recordable(), "running")
    except KeyboardInterrupt:
        state = "aborted"
    analysis.feed_blocks(unanalysed)
    analysis.finish()
    reason = "simulated offline" if state == "ended" else "mupnc sim interrupted"
    if not recorder.flush(*analysis.recordable(), state, reason):
        raise ConnectionError(f"run {number}: the database could not be reached to end the run")
    print(f"run {number}", flush=True)
    return 130 if state == "aborted" else 0


def simulated_setpoints(source: WindowSource) -> Writer:
    """A feedback writer acting on the simulator's actuators directly (``mupnc sim``: no
    IOC); a setpoint beyond an actuator's limit is refused as the IOC would."""
    by_pv = {pv: actuator for actuator, pv in SETPOINT_PVS.items()}

    def write(suffix: str, value: float) -> None:
        source.actuators.set(by_pv[suffix], value)

    return write


def reanalyze(
    url: str,
    number: int,
    minirun: int | None,
    unblind: bool,
    min_beam_rate: float | None = None,
    regress: tuple[str, ...] | None = None,
) -> dict:
    """The report of ``number`` analysed again from its recording (see the module docstring).

    ``minirun`` None keeps the run's own minirun length (patterns, or rotator patterns for
    the slow schemes); ``unblind`` drops its blinding; ``min_beam_rate`` (muons/s, None:
    no cut) cuts the patterns that saw less beam (:class:`mupnc.monitor.analysis.cuts.LowBeamCut`);
    ``regress`` names the beam variables to regress on (None: every one measured; empty:
    none), and one the run does not measure is a usage error.
    """
    engine = make_engine(url)
    require_schema(engine)
    with transaction(engine) as session:
        info = recording_info(session, number)
        run = info.run
        first_seq = int((run.config or {}).get("first_seq", 0))
        settings = run_settings(run, run_blinding(run, unblind), first_seq)
        window_rate = float((run.config or {}).get("window_rate", 0.0))
        columns = {c.key: getattr(run, c.key) for c in Run.__table__.columns}
    blinder = settings.blinder
    columns.update(blinded=blinder.blinded, blinding_checksum=blinder.checksum or None)
    low_beam = None if min_beam_rate is None else LowBeamCut(min_beam_rate, window_rate)
    analysis = RunAnalysis(settings, minirun or info.minirun_patterns, low_beam, regress=regress)
    try:
        chosen_variables(analysis.acc, regress)
    except ValueError as err:
        raise UsageError(f"run {number}: {err}") from None
    for batch in recorded_blocks(engine, number):
        analysis.feed_blocks(batch)
    analysis.finish()

    memory = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(memory)
    with transaction(memory) as session:
        session.add(Run(**columns))
    RunRecorder(memory, number).flush(
        *analysis.recordable(), columns["state"], columns["end_reason"]
    )
    with transaction(memory) as session:
        summary = beside_the_planner(run_summary(session, number))
    memory.dispose()
    summary["end"] = None if columns["end"] is None else columns["end"].isoformat()
    summary["reanalysis"] = {
        "minirun_patterns": analysis.acc.minirun_patterns,
        "unblinded": unblind,
        "min_beam_rate": min_beam_rate,
        "patterns_cut": {"low_beam": 0 if low_beam is None else low_beam.patterns_cut},
        "regress": None if regress is None else list(regress),
    }
    return summary


def import_recording(url: str, path: str) -> tuple[int, int]:
    """Import a Parquet recording (:mod:`mupnc.db.exchange`) as a new run, analysed as the monitor
    would; returns (run number, windows).  The whole file is read and checked before one
    transaction writes the run, its recording and its results: nothing is imported partly.
    A blinded recording is analysed blinded (seed from ``MUPNC_BLINDING_SEED``, else a
    random one: only a re-analysis can then unblind it)."""
    from mupnc.db.exchange import ExchangeError, imported_run, read_parquet
    from mupnc.db.store import allocate_run
    from mupnc.monitor.analysis.blinding import run_blinder

    engine = make_engine(url)
    require_schema(engine)
    metadata, blocks = read_parquet(path)
    exported = metadata["run"]
    config = exported["config"]
    blinder = run_blinder(
        bool(exported.get("blinded")),
        os.environ.get("MUPNC_BLINDING_SEED"),
        config.get("blind_box"),
    )
    row = Run(
        number=0,
        config=config,
        pattern=exported.get("pattern"),
        delay_patterns=exported.get("delay_patterns"),
        scheme=exported.get("scheme", exported.get("reversal")),  # "reversal": before 0.2
        channel_map=exported.get("channel_map"),
    )
    try:
        settings = run_settings(row, blinder, int(config.get("first_seq", 0)))
        analysis = RunAnalysis(settings, metadata.get("minirun_patterns"))
    except (KeyError, TypeError, ValueError) as err:
        raise ExchangeError(f"{path}: the run's settings are unusable ({err})") from None
    recorder = RunRecorder(engine, 0)  # numbered once the run exists
    windows = 0
    unanalysed: list = []
    for block in blocks:
        if block.n_channels != len(settings.channel_map.channels):
            raise ExchangeError(f"{path}: channel columns do not match the channel map")
        recorder.add_blocks([block])
        unanalysed.append(block)
        windows += block.n_windows
        if len(unanalysed) == BATCH_BLOCKS:
            analysis.feed_blocks(unanalysed)
            unanalysed = []
    analysis.feed_blocks(unanalysed)
    analysis.finish()
    with transaction(engine) as session:
        number = allocate_run(
            session, **imported_run(metadata, Path(path), blinder.checksum or None)
        )
        recorder.run = number
        recorder.write(session, *analysis.recordable(), "ended", f"imported from {Path(path).name}")
    return number, windows
