"""Pull study of the regressed asymmetry: is it unbiased where the raw one is not?

For each reversal scheme, ``--runs`` pseudo-runs of A_LR (1e10 muons/s; 1000 fast quartets,
or 100 rotator quartets of 0.1 s intervals) whose beam is steered 20 um by the spin state
and seen by every detector at 10 %/mm (and A_FB with the two gamma detectors seeing
opposite slopes), simulated and analysed by the monitor's numeric core.  Prints the raw
and regressed pulls' mean and width, ``(A - expected) / error``; with N runs a mean is
known to ``1/sqrt(N)`` and a width to ``1/sqrt(2N)``.

Usage: ``.venv/bin/python bench/bench_regression_pulls.py [--runs 1000] [--schemes ...]``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import numpy as np

from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.source import SourceConfig, WindowSource

STEERED = BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": {"x": 0.1}})
OPPOSITE = BeamlineConfig(
    {"x": {"hc_difference": 0.02}}, {"gamma_fwd": {"x": 0.1}, "gamma_bwd": {"x": -0.1}}
)
CASES = {
    "fast": (SourceConfig(muon_rate=1e10, beamline=STEERED), 4000),
    "slow": (
        SourceConfig(
            muon_rate=1e10,
            beamline=STEERED,
            scheme="slow",
            flip_period=0.1,
            ramp_time=0.01,
            settle_time=0.01,
        ),
        9600,
    ),
    "kick": (
        SourceConfig(
            muon_rate=1e10,
            beamline=STEERED,
            scheme="kick",
            flip_period=0.1,
            settle_time=0.01,
            kick_precession=12.3,
        ),
        9600,
    ),
    "afb": (SourceConfig(mode="afb", muon_rate=1e10, beamline=OPPOSITE, asymmetry=1e-2), 4000),
}


def pulls(config: SourceConfig, windows: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    raw, regressed = [], []
    for seed in range(runs):
        c = replace(config, seed=10_000 + seed)
        source = WindowSource(c)
        settings = RunSettings(
            1, c.pattern, c.delay_patterns, c.polarization, c.resolved_channel_map(),
            scheme=c.scheme, rotator=c.rotator, window_rate=c.window_rate,
        )  # fmt: skip
        analysis = RunAnalysis(settings, minirun_patterns=10**6)
        analysis.feed(source.next_block_of(windows).block)
        analysis.finish()
        result = analysis.result()
        expected = c.expected_asymmetry
        raw.append((result.combined.value - expected) / result.combined.error)
        regressed.append((result.regressed.value - expected) / result.regressed.error)
    return np.array(raw), np.array(regressed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="pseudo-runs per case")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(f"{args.runs} pseudo-runs per case; mean known to ±{1 / math.sqrt(args.runs):.3f}")
    for name in args.cases:
        start = time.perf_counter()
        raw, regressed = pulls(*CASES[name], args.runs)
        print(
            f"{name:5s} raw pulls mean {raw.mean():+7.2f} width {raw.std():5.2f} | regressed"
            f" mean {regressed.mean():+.3f} width {regressed.std():.3f}"
            f"  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
