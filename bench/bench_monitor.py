"""Offline throughput and memory of the monitor's numeric core, on one core.

Prints, for PREX-shaped (240 Hz x 190 channels, quartets) and MOLLER-shaped
(1920 Hz x 512 channels, Thue-Morse-64) streams:

* accumulation (``RunAccumulator.add`` on already decoded windows) and decoding plus
  accumulation (``HelicityDecoder.feed`` + ``add``), in window-channel values per second,
  for the IOC's 20 Hz blocks (live), 1-second blocks and offline chunks of 256 such
  blocks (12.8 s of data: one batch of the recording, as ``mupnc reanalyze`` feeds it; the
  result does not depend on the chunking); best of :data:`REPEATS`.  The simulator that
  makes the blocks is not timed.
* the resident memory while one long run (default: 1 hour of PREX) is simulated,
  decoded and accumulated, sampled along the run: it must stay flat (bounded).

Usage: ``.venv/bin/python bench/bench_monitor.py [--seconds S] [--memory-minutes M]``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: BLAS must not spread over the others

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

from mupnc.daq.channel_map import Channel, ChannelMap  # noqa: E402
from mupnc.monitor.analysis.accumulator import RunAccumulator  # noqa: E402
from mupnc.monitor.analysis.results import run_result  # noqa: E402
from mupnc.monitor.decoding.fast import HelicityDecoder  # noqa: E402
from mupnc.sim.source import SourceConfig, WindowSource  # noqa: E402

REPEATS = 3
"""Each timing is the best of this many repeats (the machine is shared)."""
SHAPES = {
    "PREX": dict(window_rate=240.0, channels=190, pattern="quartet"),
    "MOLLER": dict(window_rate=1920.0, channels=512, pattern="thue-morse-64"),
}


def config_for(name: str, seed: int = 1) -> SourceConfig:
    shape = SHAPES[name]
    channels = tuple(
        Channel(f"ch{i}", "scatter", 1e-4, -1 + 2 * (i + 0.5) / shape["channels"])
        for i in range(shape["channels"])
    )
    return SourceConfig(
        window_rate=shape["window_rate"],
        pattern=shape["pattern"],
        channel_map=ChannelMap(mode="alr", channels=channels),
        muon_rate=1e9,
        seed=seed,
    )


def throughput(name: str, seconds: float, block_windows: int) -> tuple[float, float]:
    """(accumulate, decode + accumulate) in window-channel values per second."""
    config = config_for(name)
    source = WindowSource(config)
    n_blocks = max(1, round(seconds * config.window_rate / block_windows))
    blocks = [source.next_block_of(block_windows).block for _ in range(n_blocks)]
    size = source.shape.size

    decode_time = math.inf
    for _ in range(REPEATS):
        decoder = HelicityDecoder(config.pattern, config.delay_patterns, source.n_channels)
        start = time.perf_counter()
        decoded = [decoder.feed(b) for b in blocks]
        decoded.append(decoder.flush())
        decode_time = min(decode_time, time.perf_counter() - start)

    accumulate_time = math.inf
    for _ in range(REPEATS):  # best of: the machine is shared
        acc = RunAccumulator(source.channel_map, size)
        start = time.perf_counter()
        for d in decoded:
            acc.add(d)
        accumulate_time = min(accumulate_time, time.perf_counter() - start)
    values = n_blocks * block_windows * source.n_channels
    assert acc.good_patterns > 0.9 * n_blocks * block_windows / size
    return values / accumulate_time, values / (decode_time + accumulate_time)


def rss_mib() -> float:
    """Current resident memory (Linux /proc), MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def memory_run(name: str, minutes: float, block_seconds: float = 1.0) -> list[tuple[float, float]]:
    """Resident memory (MiB) sampled at run fractions while a long run is monitored."""
    config = config_for(name, seed=2)
    source = WindowSource(config)
    decoder = HelicityDecoder(config.pattern, config.delay_patterns, source.n_channels)
    acc = RunAccumulator(source.channel_map, source.shape.size)
    block = int(config.window_rate * block_seconds)
    n_blocks = int(minutes * 60 / block_seconds)
    samples = []
    for i in range(1, n_blocks + 1):
        acc.add(decoder.feed(source.next_block_of(block).block))
        if i % max(1, n_blocks // 10) == 0:
            run_result(acc, config.polarization)  # what each flush computes
            samples.append((i / n_blocks, rss_mib()))
    acc.add(decoder.flush())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="stream seconds timed")
    parser.add_argument("--memory-minutes", type=float, default=60.0, help="PREX run length")
    args = parser.parse_args()
    minutes = args.memory_minutes
    print(f"resident memory (MiB) while monitoring {minutes:g} min of PREX, by run fraction")
    samples = memory_run("PREX", minutes)
    print("  " + ", ".join(f"{f:.0%}: {rss:.0f}" for f, rss in samples))
    print(f"offline throughput, one core (window-channel values/s, best of {REPEATS})")
    for name, shape in SHAPES.items():
        live = int(shape["window_rate"] / 20)
        for label, block in (("20 Hz blocks", live), ("1 s blocks", 20 * live),
                             ("12.8 s chunks", 256 * live)):  # fmt: skip
            acc_rate, full_rate = throughput(name, args.seconds, block)
            print(
                f"  {name:6} {shape['window_rate']:6.0f} Hz x {shape['channels']:3d} ch, "
                f"{label:13}: accumulate {acc_rate:9.3g}/s, decode+accumulate {full_rate:9.3g}/s"
            )


if __name__ == "__main__":
    main()
