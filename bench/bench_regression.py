"""What the beam-line regression costs the offline analysis, at the PREX and MOLLER shapes.

For each shape (PREX: 240 Hz x 190 channels, quartets; MOLLER: 1920 Hz x 512 channels,
Thue-Morse-64) a stream of simulated windows is analysed twice, as ``mupnc reanalyze``
does (decoding and accumulation over batches of 12.8 s, then the run result): once with
the detector channels alone (no beam monitors: no regression), once with the shipped five
beam position monitors added (beam at the target per window, per-pattern differences,
regression sums of every channel and the combined group on five variables, each
minirun's regression and the pooled slopes).  Best of :data:`REPEATS`; the simulator is not
timed.  Goal (issue 18): the regression adds at most 50 % to the analysis time at the
MOLLER shape.

Usage: ``.venv/bin/python bench/bench_regression.py [--seconds S]``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: BLAS must not spread over the others

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

from mupnc.daq.channel_map import Channel, ChannelMap, default_channel_map  # noqa: E402
from mupnc.monitor.analysis.run_analysis import RunAnalysis  # noqa: E402
from mupnc.monitor.analysis.settings import RunSettings  # noqa: E402
from mupnc.sim.source import SourceConfig, WindowSource  # noqa: E402

REPEATS = 3
SHAPES = {
    "PREX": dict(window_rate=240.0, channels=190, pattern="quartet"),
    "MOLLER": dict(window_rate=1920.0, channels=512, pattern="thue-morse-64"),
}
BATCH_SECONDS = 12.8


def channel_map(channels: int, monitors: bool) -> ChannelMap:
    detectors = tuple(
        Channel(f"ch{i}", "scatter", 1e-4, -1 + 2 * (i + 0.5) / channels) for i in range(channels)
    )
    bpms = [c for c in default_channel_map("alr").channels if c.role == "bpm"] if monitors else []
    return ChannelMap("alr", detectors + tuple(bpms))


def analysis_seconds(name: str, seconds: float, monitors: bool) -> tuple[float, int]:
    """(best analysis time in s, window-channel values) of ``seconds`` of data."""
    shape = SHAPES[name]
    config = SourceConfig(
        window_rate=shape["window_rate"],
        pattern=shape["pattern"],
        channel_map=channel_map(shape["channels"], monitors),
        muon_rate=1e9,
        seed=1,
    )
    source = WindowSource(config)
    batch = round(BATCH_SECONDS * config.window_rate)
    n = max(1, round(seconds * config.window_rate / batch))
    blocks = [source.next_block_of(batch).block for _ in range(n)]
    settings = RunSettings(
        1,
        config.pattern,
        config.delay_patterns,
        config.polarization,
        config.resolved_channel_map(),
        window_rate=config.window_rate,
    )
    best = math.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        analysis = RunAnalysis(settings)
        for block in blocks:
            analysis.feed(block)
        analysis.finish()
        analysis.result()
        best = min(best, time.perf_counter() - start)
    return best, n * batch * shape["channels"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=51.2, help="seconds of data per shape")
    args = parser.parse_args()
    print(f"{args.seconds:g} s of data per shape, analysed as reanalyze does; best of {REPEATS}")
    for name in SHAPES:
        without, values = analysis_seconds(name, args.seconds, monitors=False)
        with_regression, _ = analysis_seconds(name, args.seconds, monitors=True)
        print(
            f"{name:7s} without beam monitors {without:6.2f} s ({values / without / 1e6:5.1f} M"
            f" values/s), with regression {with_regression:6.2f} s: "
            f"+{100 * (with_regression / without - 1):.0f} %",
            flush=True,
        )


if __name__ == "__main__":
    main()
