"""What the monitor's once-a-second result costs as a run grows, at MOLLER scale.

Run: ``.venv/bin/python bench/bench_result_cost.py [--seconds 600]``

A simulated run of 1920 Hz × 512 channels with the shipped beam monitors (regressed) is
fed to a :class:`~mupnc.monitor.analysis.run_analysis.RunAnalysis` (not timed); then
``result()`` is timed, best of 3, refitting every minirun's regression (the cache of
complete miniruns' fits cleared before each call) and reusing them (as the monitor does,
second after second).  Prints the number of miniruns and both times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_common import write_channel_map
from support.simulated import settings_of

from mupnc.daq.channel_map import load_channel_map
from mupnc.monitor.analysis import results
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.sim.source import SourceConfig, WindowSource


def best_of_three(analysis: RunAnalysis, refit: bool) -> float:
    """The fastest of three ``result()`` calls, in ms."""
    times = []
    for _ in range(3):
        if refit:
            results._FITS.clear()
        start = time.perf_counter()
        analysis.result()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="seconds of data fed")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_result_cost_"))
    channel_map = load_channel_map(write_channel_map(folder, 512, beam_monitors=True), "alr")
    config = SourceConfig(
        channel_map=channel_map, window_rate=1920, muon_rate=1e10, asymmetry=1e-3, seed=11
    )
    analysis = RunAnalysis(settings_of(config))
    source = WindowSource(config)
    for _ in range(args.seconds):
        analysis.feed(source.next_block_of(1920).block)
    analysis.result()
    refit, reused = best_of_three(analysis, True), best_of_three(analysis, False)
    print(
        f"{args.seconds} s of data, {len(analysis.acc.miniruns)} miniruns: result() "
        f"refitting every minirun {refit:.0f} ms, reusing complete miniruns' fits {reused:.0f} ms"
    )


if __name__ == "__main__":
    main()
