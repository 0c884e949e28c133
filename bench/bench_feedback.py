"""Charge feedback closed around the simulator: how fast it converges, and is the charge
asymmetry it leaves behind zero?

For each ratio of the actuator's true response to the loop's calibrated slope, ``--runs``
seeded pseudo-runs of a 1000 ppm charge asymmetry (1e8 muons/s, quiet beam: ~70 ppm per
quartet), the charge loop deciding every 1000 good patterns (gain 1, max_error 20 ppm,
clamp 3000 ppm), 30 decisions long; the loop acts after every 960-window block as the
monitor does after every flush.  Prints the actions until the first decision whose input
is within 3 sigma of zero (median and the worst run), and the pulls of the charge
asymmetry accumulated over the last half of each run, ``A_q / error``: with N runs their
mean is known to ``1/sqrt(N)`` and their width to ``1/sqrt(2N)``.

Usage: ``.venv/bin/python bench/bench_feedback.py [--runs 100] [--ratios 0.5 0.8 1.0 1.5]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.monitor.feedback.loop import FeedbackLoop, LoopSettings, loop_inputs
from mupnc.sim.actuators import ActuatorsConfig
from mupnc.sim.source import SourceConfig, WindowSource

LOOP = LoopSettings(mode="on", patterns=1000, max_error=20.0, clamp=3000.0)
BLOCKS = 130  # 960-window blocks: 240 quartets each, 30 decisions of 1000 patterns


def pseudo_run(ratio: float, seed: int) -> tuple[int, float]:
    """(actions until the input is within 3 sigma of zero, last-half pull of A_q)."""
    config = SourceConfig(
        charge_asymmetry=1e-3,
        muon_rate=1e8,
        intensity_jitter=1e-4,
        seed=seed,
        actuators=ActuatorsConfig({"charge": {"slope": ratio}}),
    )
    source = WindowSource(config)
    analysis = RunAnalysis(
        RunSettings(1, config.pattern, config.delay_patterns, config.polarization,
                    config.resolved_channel_map()),
        minirun_patterns=10**6,
    )  # fmt: skip
    loop = FeedbackLoop("charge", LOOP)
    converged_after, actions, half = -1, 0, None
    for block in range(BLOCKS):
        analysis.feed(source.next_block_of(960).block)
        for action in loop.update(loop_inputs(analysis.acc, "charge"), 0.0):
            if converged_after < 0 and abs(action.value) < 3 * action.error:
                converged_after = actions
            actions += action.acted
            source.actuators.set("charge", action.after)
        if block == BLOCKS // 2:
            half = analysis.acc.run_stats("charge_asymmetry")
    last = analysis.acc.run_stats("charge_asymmetry").since(half)
    return converged_after, float(last.mean[0] / last.error[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="pseudo-runs per ratio")
    parser.add_argument("--ratios", type=float, nargs="*", default=[0.5, 0.8, 1.0, 1.5])
    args = parser.parse_args()
    print(f"{args.runs} pseudo-runs per ratio; pull mean known to ±{1 / math.sqrt(args.runs):.2f}")
    print("true/calibrated | actions to |A_q| < 3σ: median, max | last-half A_q pull: mean, width")
    for ratio in args.ratios:
        start = time.perf_counter()
        results = [pseudo_run(ratio, 100 + seed) for seed in range(args.runs)]
        steps = np.array([r[0] for r in results])
        pulls = np.array([r[1] for r in results])
        never = int((steps < 0).sum())
        print(
            f"{ratio:15.2f} | {np.median(steps[steps >= 0]):6.0f} {steps.max():5d}"
            + (f" ({never} never)" if never else "")
            + f" | {pulls.mean():+.3f} {pulls.std():.3f}  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
