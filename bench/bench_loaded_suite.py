"""The whole test suite on a busy machine: every core kept busy by a spinning process while
``pytest`` runs the suite, several times in a row.

    python3 bench/bench_loaded_suite.py [--runs 3] [--busy N] [--log-dir DIR] [COMMAND...]

``--busy`` spinning processes (default: one per core, ``os.cpu_count()``) run at normal
priority for the whole study, like a `stress --cpu N` load.  COMMAND (default
``bash .ci/run``: what CI runs, set-up included) runs ``--runs`` times in a row in the
working folder, its output kept in ``DIR/run-K.log``.  Prints, per run, the exit status,
the wall time and the last line of the output (pytest's summary), the failed tests, then
the load the busy loops held (their CPU seconds over the wall time).  Exit status 1 if
any run failed.  Run it in a fresh clone, as CI does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import cpu_seconds


def spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="suite runs in a row (default 3)")
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="spinning processes")
    parser.add_argument("--log-dir", type=Path, default=Path("."), help="where run-K.log goes")
    parser.add_argument("command", nargs="*", help="what to run (default: bash .ci/run)")
    args = parser.parse_args()
    command = args.command or ["bash", ".ci/run"]
    loops = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for loop in loops:
        loop.start()
    started = time.monotonic()
    failed = 0
    try:
        for k in range(1, args.runs + 1):
            t0 = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True)
            (args.log_dir / f"run-{k}.log").write_text(done.stdout + done.stderr)
            summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
            failed += done.returncode != 0
            print(
                f"run {k}/{args.runs}: exit {done.returncode}, {time.monotonic() - t0:.0f} s: "
                f"{summary}",
                flush=True,
            )
            if done.returncode != 0:
                failures = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
                print("\n".join(failures), flush=True)
    finally:
        wall = time.monotonic() - started
        load = sum(cpu_seconds(loop.pid) for loop in loops) / wall
        for loop in loops:
            loop.terminate()
    print(f"{args.busy} busy loops held {load:.2f} cores on average over {wall:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
