"""The whole test suite on a busy machine: every core kept busy by a spinning process while
``pytest`` runs the suite, several times in a row.

    python bench/bench_loaded_suite.py [--runs 3] [--busy N] [-- PYTEST ARGS]

``--busy`` spinning processes (default: one per core, ``os.cpu_count()``) run at normal
priority for the whole study, like a `stress --cpu N` load.  Prints, per run, the exit
status, the wall time and the pytest summary line, then the load the busy loops held
(their CPU seconds over the wall time).  Exit status 1 if any run failed.  Run it from a
clone whose ``.venv`` is set up (``make test`` once).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path


def spin() -> None:
    while True:
        pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="suite runs in a row (default 3)")
    parser.add_argument("--busy", type=int, default=os.cpu_count(), help="spinning processes")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    pytest = Path(sys.executable).with_name("pytest")
    loops = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for loop in loops:
        loop.start()
    started = time.monotonic()
    failed = 0
    try:
        for k in range(1, args.runs + 1):
            t0 = time.monotonic()
            done = subprocess.run(
                [str(pytest), "-q", "-p", "no:cacheprovider", *args.pytest_args],
                capture_output=True,
                text=True,
            )
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
