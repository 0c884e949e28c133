"""Dithering versus truth: are the coils' sensitivities and the dithered asymmetry unbiased,
with the right errors, and do regression and dithering agree?

Per case, ``--runs`` pseudo-runs of 60 s (1e10 muons/s, fast quartets at 240 Hz) with a
modulation cycle every 6 s (five coils of 1 s: nine cycles a run), the beam steered 20 um
in x by the spin state; the detectors see 10 %/mm in x and -5 %/mm in y (A_LR: every
channel; A_FB: the forward gamma detector +10 %/mm in x, the backward -10 %/mm, so the
cross-ratio combination's sensitivity is -0.1 /mm).  Each run is simulated and analysed by
the monitor's numeric core.  Prints, per beam variable, the pulls of the run's combined
sensitivity against the simulated one, ``(beta - truth) / error``, of one cycle's (the
first), and of the run's regression-minus-dithering slope difference, ``d / error``; then
the dithered asymmetry's pulls against the expected asymmetry.  With N runs a mean is
known to ``1/sqrt(N)`` and a width to ``1/sqrt(2N)``.

Usage: ``.venv/bin/python bench/bench_dithering.py [--runs 1000] [--cases alr afb]``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from mupnc.daq.beamline import BEAM_VARIABLES
from mupnc.monitor.analysis.beam_results import COMBINED
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.modulation import ModulationConfig
from mupnc.sim.source import SourceConfig, WindowSource

MODULATION = ModulationConfig(enabled=True, period=6.0, coil_time=1.0)
STEERED = {"x": {"hc_difference": 0.02}}
CASES = {
    "alr": (
        SourceConfig(
            muon_rate=1e10,
            modulation=MODULATION,
            beamline=BeamlineConfig(STEERED, {"default": {"x": 0.1, "y": -0.05}}),
        ),
        {"x": 0.1, "y": -0.05},
    ),
    "afb": (
        SourceConfig(
            mode="afb",
            muon_rate=1e10,
            asymmetry=1e-2,
            modulation=MODULATION,
            beamline=BeamlineConfig(STEERED, {"gamma_fwd": {"x": 0.1}, "gamma_bwd": {"x": -0.1}}),
        ),
        {"x": -0.1},
    ),
}
SECONDS = 60
"""Length of a pseudo-run."""


def study(config: SourceConfig, truth: dict[str, float], runs: int) -> dict[str, np.ndarray]:
    """Pulls per kind (``run:VAR``, ``cycle:VAR``, ``difference:VAR``, ``dithered``)."""
    out: dict[str, list[float]] = {}
    for seed in tqdm(range(runs), desc=config.mode, unit="run", leave=False):
        c = replace(config, seed=20_000 + seed)
        settings = RunSettings(
            1, c.pattern, c.delay_patterns, c.polarization, c.resolved_channel_map(),
            scheme=c.scheme, rotator=c.rotator, window_rate=c.window_rate,
        )  # fmt: skip
        analysis = RunAnalysis(settings, minirun_patterns=10**6)
        source = WindowSource(c)
        for _ in range(SECONDS):
            analysis.feed(source.next_block_of(240).block)
        analysis.finish()
        result = analysis.result()
        first = result.dither_cycles[0]
        for v in BEAM_VARIABLES:
            key, expected = (COMBINED, v), truth.get(v, 0.0)
            for kind, m in (
                ("run", result.dither_sensitivities[key]),
                ("cycle", first.sensitivities[key]),
            ):
                out.setdefault(f"{kind}:{v}", []).append((m.value - expected) / m.error)
            d = result.dither_difference[key]
            out.setdefault(f"difference:{v}", []).append(d.value / d.error)
        dithered = result.dithered
        out.setdefault("dithered", []).append(
            (dithered.value - c.expected_asymmetry) / dithered.error
        )
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="pseudo-runs per case")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    print(
        f"{args.runs} pseudo-runs of {SECONDS} s per case; a mean is known to "
        f"±{1 / math.sqrt(args.runs):.3f}, a width to ±{1 / math.sqrt(2 * args.runs):.3f}"
    )
    for name in args.cases:
        start = time.perf_counter()
        pulls = study(*CASES[name], args.runs)
        print(f"{name} ({time.perf_counter() - start:.0f} s): pull mean / width")
        print(f"  {'variable':8s} {'run beta':>14s} {'one cycle':>14s} {'reg - dit':>14s}")
        for v in BEAM_VARIABLES:
            cells = [pulls[f"{kind}:{v}"] for kind in ("run", "cycle", "difference")]
            print(f"  {v:8s} " + " ".join(f"{p.mean():+6.3f} / {p.std():5.3f}" for p in cells))
        dithered = pulls["dithered"]
        print(f"  dithered asymmetry: {dithered.mean():+.3f} / {dithered.std():.3f}", flush=True)


if __name__ == "__main__":
    main()
