"""Replay of a recorded run through real Channel Access, and re-analysis.

1. ``mupnc sim`` records a run of ``--seconds`` of data at ``--window-rate`` x
   ``--channels`` channels (quartets, the live IOC's 20 Hz blocks unless ``--block-rate``);
   its wall time is shown.  The default is PREX's shape (240 Hz x 190 channels);
   ``--shape moller`` is MOLLER's (1920 Hz x 512 channels, 1e10 muons/s).
2. ``mupnc ioc --source replay:RUN --speed SPEED`` + ``mupnc monitor`` (child processes, as
   ``mupnc replay`` runs them) replay it as a new run (``--speed``: max, or a factor).
   Speed-up = data seconds / wall seconds between the IOC's CA timestamps of the second
   and the last ``DAQ:SEQ`` update (block 0 goes out before the monitor is ready); the wall
   time of the whole replay, start-up and drain included, is shown too, and the CPU time of
   each process by thread (main, the other Python threads, libca's named threads) per
   second of data.  The replay must
   lose no window and report the same analysis as the recorded run.
3. ``mupnc reanalyze`` of the recording in this process: window-channel values per second.

Usage: ``.venv/bin/python bench/bench_replay.py [--seconds 600] [--shape prex|moller]
[--channels N] [--window-rate HZ] [--block-rate 20] [--speed max|FACTOR] [--no-reanalyze]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import cpu_seconds, thread_cpu_seconds, write_channel_map
from support.chains import analysis

from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port

os.environ.setdefault("MUPNC_BLINDING_SEED", "bench-replay")  # the same blinding offset

IOC_PORT, MONITOR_PORT, REPEATER_PORT = free_port(), free_port(), free_port()
PORTS = [IOC_PORT, MONITOR_PORT]
apply(ca_environment(None, PORTS, REPEATER_PORT))

import epics  # noqa: E402  (libca reads the environment when it loads)

from mupnc.commands import report  # noqa: E402
from mupnc.db.recording_reader import WHOLE_RUN  # noqa: E402
from mupnc.db.session import make_engine  # noqa: E402
from mupnc.offline import reanalyze  # noqa: E402
from mupnc.orchestrate import Chain  # noqa: E402
from mupnc.replay import allocate_replay  # noqa: E402

SHAPES = {"prex": (240.0, 190, 1e9), "moller": (1920.0, 512, 1e10)}
"""Window rate (Hz), detector channels and muon rate (1/s) of each experiment's shape."""


def simulate(db: str, args: argparse.Namespace, channel_map: Path) -> float:
    started = time.perf_counter()
    options = ["--seconds", str(args.seconds), "--window-rate", str(args.window_rate)]
    options += ["--rate", f"{args.rate:g}"]
    options += ["--channel-map", str(channel_map), "--block-rate", str(args.block_rate)]
    subprocess.run(
        [sys.executable, "-m", "mupnc", "--db", db, "sim", *options],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def replay(db: str, run: int, speed: str) -> tuple[int, float, list[tuple[float, int]], dict]:
    """Replay ``run`` at ``speed``: (new run, wall seconds, DAQ:SEQ (timestamp, value)s,
    CPU seconds of the IOC and the monitor)."""
    engine = make_engine(db)
    number = allocate_replay(engine, run, WHOLE_RUN, None, (None, None))
    engine.dispose()
    updates: list[tuple[float, int]] = []
    sink, chain = BeaconSink(REPEATER_PORT), Chain(db=db)
    started = time.perf_counter()
    try:
        ioc = ["ioc", "--run", str(number), "--source", f"replay:{run}", "--speed", speed]
        chain.start("ioc", ioc, ca_environment(IOC_PORT, PORTS, REPEATER_PORT))
        if epics.caget("MUPNC:DAQ:RING_DEPTH", timeout=120) is None:
            raise RuntimeError("the replaying IOC did not come up")
        pv = epics.PV("MUPNC:DAQ:SEQ", auto_monitor=True, form="time")
        pv.add_callback(lambda value=None, timestamp=None, **_: updates.append((timestamp, value)))
        pv.wait_for_connection(timeout=10)
        chain.start("monitor", ["monitor"], ca_environment(MONITOR_PORT, PORTS, REPEATER_PORT))
        monitor = chain.processes["monitor"]
        ioc_pid = chain.processes["ioc"].pid
        cpu = {"ioc": cpu_seconds(ioc_pid), "monitor": 0.0}
        ioc_threads, monitor_threads = thread_cpu_seconds(ioc_pid), {}
        while monitor.poll() is None:  # sample the monitor's CPU until it exits
            with contextlib.suppress(OSError):  # it exits between two reads
                cpu["monitor"] = max(cpu["monitor"], cpu_seconds(monitor.pid))
                for kind, seconds in thread_cpu_seconds(monitor.pid).items():  # threads end
                    monitor_threads[kind] = max(monitor_threads.get(kind, 0.0), seconds)
            time.sleep(0.05)
        if monitor.returncode != 0:
            raise RuntimeError("the monitor did not finish the replay")
        wall = time.perf_counter() - started
        cpu["ioc"] = cpu_seconds(ioc_pid) - cpu["ioc"]
        ioc_now = thread_cpu_seconds(ioc_pid)
        cpu["threads"] = {
            **{f"IOC {k}": v - ioc_threads.get(k, 0.0) for k, v in ioc_now.items()},
            **{f"monitor {k}": v for k, v in monitor_threads.items()},
        }
        pv.clear_callbacks()
    finally:
        chain.shutdown()
        sink.close()
    return number, wall, updates, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="seconds of data")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="prex")
    parser.add_argument("--channels", type=int, help="detector channels (default: the shape's)")
    parser.add_argument("--window-rate", type=float, help="windows/s (default: the shape's)")
    parser.add_argument("--block-rate", type=float, default=20.0, help="blocks per data second")
    parser.add_argument("--speed", default="max", help="replay speed: max or a factor")
    parser.add_argument("--no-reanalyze", action="store_true", help="skip step 3")
    args = parser.parse_args()
    window_rate, channels, args.rate = SHAPES[args.shape]
    args.window_rate = args.window_rate or window_rate
    args.channels = args.channels or channels
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'replay.db'}"
        channel_map = write_channel_map(Path(folder), args.channels, acceptance=1e-4)
        sim_wall = simulate(db, args, channel_map)
        windows = report(db, 1)["windows"]
        print(
            f"mupnc sim: {windows} windows x {args.channels} channels "
            f"({args.seconds:g} s of data, {args.block_rate:g} blocks/s) in {sim_wall:.1f} s "
            f"= {args.seconds / sim_wall:.0f}x real time"
        )

        number, wall, updates, cpu = replay(db, 1, args.speed)
        paced = [(t, s) for t, s in updates if s is not None and s >= 0][1:]
        (t0, s0), (t1, s1) = paced[0], paced[-1]
        data = (s1 - s0) / args.window_rate
        original, replayed = report(db, 1), report(db, number)
        same = analysis(original) == analysis(replayed)
        print(
            f"replay at {args.speed} over CA: {data:.0f} s of data in {t1 - t0:.1f} s "
            "of publishing "
            f"= {data / (t1 - t0):.0f}x real time; whole replay incl. start-up and drain "
            f"{wall:.1f} s = {args.seconds / wall:.0f}x; lost windows "
            f"{replayed['lost_windows']}; same analysis as recorded: {same}; CPU: IOC "
            f"{cpu['ioc']:.1f} s (replay part), monitor {cpu['monitor']:.1f} s (all)"
        )
        shown = [
            f"{k} {1e3 * v / args.seconds:.0f}"
            for k, v in sorted(cpu["threads"].items())
            if 1e3 * v / args.seconds >= 0.5
        ]
        print(
            "CPU per second of data, by thread (ms; the monitor's main thread includes its "
            "start-up): " + ", ".join(shown)
        )

        if args.no_reanalyze:
            return
        started = time.perf_counter()
        again = reanalyze(db, 1, None, unblind=False)
        seconds = time.perf_counter() - started
        values = again["windows"] * args.channels
        print(
            f"reanalyze: {values:.3g} window-channel values in {seconds:.1f} s "
            f"= {values / seconds:.3g} values/s ({again['windows'] / seconds:.0f} windows/s)"
        )


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
