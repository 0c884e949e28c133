"""Pull study of the measured polarization and of the asymmetry divided by it.

Per mode (A_LR, A_FB) and reversal scheme (fast; slow rotator and ring kick with 0.1 s
intervals), ``--runs`` pseudo-runs of 10 s at 1e10 muons/s, asymmetry 1e-2, with an
incomplete flip (P+ 0.9, P- -0.8; the kick's turns rotate the spin further), simulated and
analysed by the monitor's numeric core.  Prints the pulls' mean and width of P+ and P-
against the simulator's spin over the kept windows, of the physics asymmetry divided by
the measured polarization and of the one divided by the configured polarization.  With N
runs a mean is known to ``1/sqrt(N)`` and a width to ``1/sqrt(2N)``.

Usage: ``.venv/bin/python bench/bench_polarimetry.py [--runs 1000]``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from mupnc.daq.blocks import FLAG_SETTLE
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.sim.polarimeter import PolarimeterConfig
from mupnc.sim.source import SourceConfig, WindowSource

INCOMPLETE = PolarimeterConfig(enabled=True, polarization_minus=-0.8)
SCHEMES = {
    "fast": {},
    "slow": dict(scheme="slow", flip_period=0.1, ramp_time=0.01, settle_time=0.01),
    "kick": dict(scheme="kick", flip_period=0.1, settle_time=0.01, kick_precession=12.0),
}
SECONDS = 10


def pulls(config: SourceConfig, runs: int) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {"P+": [], "P-": [], "A / P measured": [], "A / P configured": []}
    for seed in tqdm(range(runs), desc=f"{config.mode} {config.scheme}", leave=False):
        c = replace(config, seed=30_000 + seed)
        settings = RunSettings(
            1, c.pattern, c.delay_patterns, c.polarization, c.resolved_channel_map(),
            scheme=c.scheme, rotator=c.rotator, window_rate=c.window_rate,
        )  # fmt: skip
        analysis = RunAnalysis(settings, minirun_patterns=10**6)
        source = WindowSource(c)
        spin, state = [], []
        for _ in range(SECONDS):
            simulated = source.next_block_of(240)
            kept = (simulated.block.flags & FLAG_SETTLE) == 0
            spin.append(simulated.polarization[kept])
            state.append(simulated.actual_helicity[kept])
            analysis.feed(simulated.block)
        analysis.finish()
        result = analysis.result()
        s, h = np.concatenate(spin), np.concatenate(state)
        p, expected = result.polarization, c.expected_asymmetry
        out["P+"].append((p.plus.value - s[h == 1].mean()) / p.plus.error)
        out["P-"].append((p.minus.value - s[h == -1].mean()) / p.minus.error)
        out["A / P measured"].append((result.combined.value - expected) / result.combined.error)
        configured = result.configured_combined
        out["A / P configured"].append((configured.value - expected) / configured.error)
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="pseudo-runs per case")
    args = parser.parse_args()
    print(f"{args.runs} pseudo-runs per case; a mean is known to ±{1 / math.sqrt(args.runs):.3f}")
    for mode in ("alr", "afb"):
        for scheme, options in SCHEMES.items():
            start = time.perf_counter()
            config = SourceConfig(
                mode=mode, muon_rate=1e10, asymmetry=1e-2, polarimeter=INCOMPLETE, **options
            )
            found = pulls(config, args.runs)
            cells = " | ".join(f"{k} {v.mean():+.3f} / {v.std():.3f}" for k, v in found.items())
            print(f"{mode} {scheme:4s} {cells}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
