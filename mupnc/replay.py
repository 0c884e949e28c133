"""``mupnc replay`` and ``mupnc ioc --source replay:RUN``: a recorded run through the IOCs.

The replay is a new run (source "replay", ``replay_of`` the recorded run) with the
recorded run's settings; its provenance names the run, speed and range replayed.  The
monitor analyses it as live data, with the recorded run's minirun length and blinding, so
its report equals the original's (see :mod:`mupnc.replay_source` for what the IOC publishes).
``--from``/``--to`` (seconds of data since the run began) keep the blocks that lie wholly
inside the range; a pattern cut by the range's edge counts as incomplete.  Every block of
the range is read once before the replay run is allocated, so a corrupt recording is
refused (:class:`mupnc.db.block_codec.RecordingError`) before anything is written or published.
"""

from __future__ import annotations

import argparse
import asyncio
import math

from sqlalchemy import Engine
from tqdm import tqdm

from mupnc.attach import pva_wanted
from mupnc.db.recording_reader import SeqRange, recorded_blocks, recording_info
from mupnc.db.session import make_engine, require_schema, transaction
from mupnc.db.store import allocate_run
from mupnc.epics_env import free_port
from mupnc.orchestrate import MONITOR_DRAIN_SECONDS, ChainedRun, refuse_port_in_use
from mupnc.signals import StopNow, stop_on_signals

RUN_COLUMNS = (
    "scheme",
    "pattern",
    "delay_patterns",
    "channel_map",
    "target_z",
    "momentum",
    "slow_controls",
    "blinded",
)
"""Run columns a replay takes over from the recorded run."""


def seq_range(engine: Engine, number: int, start: float | None, stop: float | None) -> SeqRange:
    """Windows of ``number`` between ``start`` and ``stop`` s of data (None: the edge)."""
    with transaction(engine) as session:
        info = recording_info(session, number)
        rate = float(info.run.config["window_rate"])
    first = 0 if start is None else math.ceil(start * rate)
    return SeqRange(first, None if stop is None else math.ceil(stop * rate))


def check_recording(engine: Engine, number: int, seq: SeqRange, windows: int) -> None:
    """Read every recorded block of ``number`` in ``seq`` (a progress bar on a terminal);
    raises :class:`mupnc.db.block_codec.RecordingError` naming the first bad block."""
    with tqdm(
        total=windows, unit=" windows", unit_scale=True, desc="checking", disable=None
    ) as bar:
        for batch in recorded_blocks(engine, number, seq):
            bar.update(sum(block.n_windows for block in batch))


def allocate_replay(
    engine: Engine, number: int, seq: SeqRange, speed: float | None, window: tuple
) -> int:
    """A new run replaying ``number`` (in the caller's database), once its recording has
    been checked (:func:`check_recording`); returns its number."""
    with transaction(engine) as session:
        windows = recording_info(session, number, seq).windows
    check_recording(engine, number, seq, windows)
    with transaction(engine) as session:
        info = recording_info(session, number, seq)
        run = info.run
        config = dict(run.config or {})
        config.update({name: getattr(run, name) for name in RUN_COLUMNS})
        config["first_seq"] = info.first_seq
        provenance = {
            "replay_of": number,
            "speed": "max" if speed is None else speed,
            "from": window[0],
            "to": window[1],
            "first_seq": info.first_seq,
            "last_seq": info.last_seq,
            "windows": info.windows,
            "blocks": info.blocks,
        }
        return allocate_run(
            session,
            source="replay",
            mode=run.mode,
            config=config,
            replay_of=number,
            provenance=provenance,
        )


def replay_ioc(args: argparse.Namespace) -> int:
    """``mupnc ioc --source replay:RUN``: serve the recorded run (a new run unless --run)."""
    from mupnc.errors import UsageError
    from mupnc.ioc.main import serve
    from mupnc.ioc.server import build_ioc
    from mupnc.replay_source import RecordedSource, ReplayClock

    if args.group != "all" or args.list_pvs:
        raise UsageError("a replay serves all PV groups in one process (no --group/--list-pvs)")
    engine = make_engine(args.db)
    require_schema(engine)
    seq = seq_range(engine, args.source, args.start, args.stop)
    source = RecordedSource(engine, args.source, seq)
    run = args.run
    if run is None:
        run = allocate_replay(engine, args.source, seq, args.speed, (args.start, args.stop))
    blind_box = (source.blind_box or 0.0) if source.blinded else None
    group = build_ioc(
        args.prefix,
        source.config,
        run,
        source.block_rate,
        blind_box=blind_box,
        source=source,
        clock=ReplayClock(args.speed),
    )
    print(
        f"run {run}: replaying run {args.source} ({source.windows} windows in "
        f"{source.blocks} blocks) at speed {args.speed or 'max'}",
        flush=True,
    )
    asyncio.run(serve(group))
    return 0


def replay(args: argparse.Namespace) -> int:
    """``mupnc replay``: IOC (replaying) + monitor (+ dashboard) until the replay ends."""
    from mupnc.monitor.recorded_settings import run_blinding

    stop = stop_on_signals()
    dashboard = None if args.no_dashboard else args.port
    refuse_port_in_use(dashboard)
    engine = make_engine(args.db)
    require_schema(engine)
    seq = seq_range(engine, args.run, args.start, args.stop)
    with transaction(engine) as session:
        info = recording_info(session, args.run, seq)
        run_blinding(info.run)  # the monitor must be able to blind the replay alike
        minirun = info.minirun_patterns
    number = allocate_replay(engine, args.run, seq, args.speed, (args.start, args.stop))
    engine.dispose()

    ioc_args = ["ioc", "--run", str(number), "--source", f"replay:{args.run}"]
    ioc_args += ["--speed", "max" if args.speed is None else repr(args.speed)]
    ioc_args += [] if args.start is None else ["--from", repr(args.start)]
    ioc_args += [] if args.stop is None else ["--to", repr(args.stop)]
    monitor_args = ["monitor"] + ([] if minirun is None else ["--minirun", str(minirun)])
    pva_port = free_port() if pva_wanted(None) else None  # the monitor's pvAccess server
    monitor_args += [] if pva_port else ["--no-pva"]
    chained = ChainedRun(args.db, number, stop)
    try:
        headline = f"run {number} (replay of run {args.run})"
        chained.launch(ioc_args, monitor_args, dashboard, headline, pva_port=pva_port)
        monitor = chained.chain.processes.get("monitor")
        chained.watch(lambda: monitor is not None and monitor.poll() is not None)
        if stop.is_set() or chained.abort_reason is not None:
            chained.end_run()
        elif chained.chain.wait("monitor", MONITOR_DRAIN_SECONDS) != 0:
            chained.abort_reason = "the monitor did not finish the replay cleanly"
    except StopNow:
        chained.kill()
    state, _ = chained.close()
    status = chained.status(state)
    return 130 if status == 0 and stop.is_set() else status  # a replay cut short
