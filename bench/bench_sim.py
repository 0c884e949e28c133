"""Simulator throughput: window-channel values generated per second on one core.

Run: ``.venv/bin/python bench/bench_sim.py [--seconds S]``.  For each configuration the
source produces blocks of 1/20 s of windows (the IOC's default block rate) for about S
seconds of wall time; the figure is windows x channels / CPU time of the generating thread.
"""

from __future__ import annotations

import argparse
import time

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.sim.source import SourceConfig, WindowSource


def scatter_map(n_channels: int) -> ChannelMap:
    """``n_channels`` A_LR bins evenly in cos theta."""
    return ChannelMap(
        mode="alr",
        channels=tuple(
            Channel(f"scat_{i}", "scatter", 2.5e-4, -1 + (2 * i + 1) / n_channels)
            for i in range(n_channels)
        ),
    )


CONFIGS = {
    "PREX-like 240 Hz x 190 ch, quartets": SourceConfig(
        window_rate=240, pattern="quartet", channel_map=scatter_map(190)
    ),
    "MOLLER-like 1920 Hz x 512 ch, thue-morse-64": SourceConfig(
        window_rate=1920, pattern="thue-morse-64", channel_map=scatter_map(512)
    ),
    "A_FB 20 kHz x 2 ch, pairs": SourceConfig(mode="afb", window_rate=20_000, pattern="pair"),
    "slow rotator 1920 Hz x 512 ch, 2 faults on": SourceConfig(
        window_rate=1920, scheme="slow", flip_period=5.0, channel_map=scatter_map(512)
    ),
}


def measure(config: SourceConfig, seconds: float) -> tuple[float, int]:
    source = WindowSource(config)
    if config.scheme == "slow":
        source.set_fault("missed_windows", True)
        source.set_fault("charge_asymmetry", True)
    per_block = max(1, round(config.window_rate / 20))
    values = 0
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        simulated = source.next_block_of(per_block)
        values += simulated.block.counts.size
    return values / (time.thread_time() - start), source.next_seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="CPU seconds per configuration")
    args = parser.parse_args()
    for name, config in CONFIGS.items():
        rate, windows = measure(config, args.seconds)
        print(f"{name:48s} {rate / 1e6:7.1f} M window-channel values/s ({windows} windows)")


if __name__ == "__main__":
    main()
