"""Refill from the IOC's ring buffer: how fast a monitor reads back the blocks it missed.

A ``mupnc ioc`` (child process) publishes ``--window-rate`` x ``--channels`` in
``--block-rate`` blocks per second until its ring is full; then a :class:`BlockIngest` in
this process reads the whole ring back (``catch_up``), as a monitor restarted after an
outage does.  Printed: ring slots read back per second and the ratio to the rate the IOC
fills them.  Above 1 a refill gains on the IOC; below 1 the IOC overwrites the oldest
missed blocks before they are read, and a monitor away for nearly the ring's length loses
more than the overflow.

Usage: ``.venv/bin/python bench/bench_refill.py [--window-rate 1920] [--channels 512]
[--block-rate 20] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port

IOC_PORT, CLIENT_PORT, REPEATER_PORT = free_port(), free_port(), free_port()
PORTS = [IOC_PORT, CLIENT_PORT]
apply(ca_environment(None, PORTS, REPEATER_PORT))

import epics  # noqa: E402  (libca reads the environment when it loads)
from bench_common import write_channel_map  # noqa: E402

from mupnc.daq.blocks import WindowBlock  # noqa: E402
from mupnc.monitor.ingest import BlockIngest  # noqa: E402
from mupnc.orchestrate import Chain  # noqa: E402
from mupnc.runs import new_run  # noqa: E402
from mupnc.sim.source import SourceConfig  # noqa: E402

PREFIX = "REFILL:"


def read_back_ring(ingest: BlockIngest, block_rate: float) -> tuple[int, int, int, float]:
    """Read back every block the ring holds but the one second of blocks the IOC will
    rewrite soonest: (blocks read, blocks lost, windows read, wall seconds)."""
    newest = WindowBlock.unpack(epics.caget(PREFIX + "DAQ:BLOCK", timeout=10))
    first = newest.block_number - ingest.ring_depth + 1 + math.ceil(block_rate)
    ingest.resume_at(newest.stream_id, first, -1)
    lost = ingest.counters.blocks_lost
    started = time.perf_counter()
    read = windows = 0
    for blocks in ingest.catch_up(newest.block_number):
        read, windows = read + len(blocks), windows + sum(b.n_windows for b in blocks)
    wall = time.perf_counter() - started
    lost = ingest.counters.blocks_lost - lost
    return read, lost, windows, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-rate", type=float, default=1920.0, help="windows per second")
    parser.add_argument("--channels", type=int, default=512, help="detector channels")
    parser.add_argument("--block-rate", type=float, default=20.0, help="blocks per second")
    parser.add_argument("--repeat", type=int, default=3, help="read-backs of the full ring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{folder}/refill.db"
        run = new_run(db, SourceConfig())
        sink, chain = BeaconSink(REPEATER_PORT), Chain(db=db)
        try:
            ioc = ["ioc", "--run", str(run), "--prefix", PREFIX, "--rate", "1e9"]
            ioc += ["--block-rate", str(args.block_rate), "--window-rate", str(args.window_rate)]
            ioc += ["--channel-map", str(write_channel_map(Path(folder), args.channels))]
            chain.start("ioc", ioc, ca_environment(IOC_PORT, PORTS, REPEATER_PORT))
            ingest = BlockIngest(PREFIX, connect_timeout=120)
            fill = ingest.ring_depth / args.block_rate
            print(
                f"IOC: {args.window_rate:g} Hz x {args.channels} channels, "
                f"{args.block_rate:g} blocks/s, ring of {ingest.ring_depth} blocks "
                f"({fill:.0f} s); waiting for it to fill"
            )
            time.sleep(fill + 2)
            for _ in range(args.repeat):
                blocks, lost, windows, wall = read_back_ring(ingest, args.block_rate)
                print(
                    f"read back {blocks} blocks ({windows} windows, {lost} overwritten before "
                    f"they were read) in {wall:.2f} s = "
                    f"{blocks / wall:.0f} blocks/s = {blocks / wall / args.block_rate:.1f}x "
                    f"the rate the IOC fills its ring"
                )
        finally:
            chain.shutdown()
            sink.close()


if __name__ == "__main__":
    main()
