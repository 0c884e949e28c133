"""Pull studies of the two estimators across counting rates (A_FB cross ratio, quartets).

For each mean count per detector per window, pseudo-runs of a forward and a backward
detector (A_FB = 0.1, P = 0.9, forward acceptance 30 % higher, independent Poisson counts,
a beam monitor of 1e-4 resolution) go through the monitor's accumulator; each run is
analysed by the counting estimator (summed counts) and the integrating one (per-pattern
cross ratio, JAPAN), and the pulls ``(A - P A_FB) / sigma`` of both are summarised.  Every
run holds about 1000 counts per detector (its window count scales with 1/rate), so the
comparison is at equal statistics.

Run: .venv/bin/python bench/bench_estimators.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.results import COUNTING, INTEGRATING, choose_estimator, run_result
from mupnc.monitor.decoding.stream import DecodedWindows

P, A_FB, QUARTET = 0.9, 0.1, np.array([1, -1, -1, 1])
RATES = (0.0075, 0.03, 0.3, 1.0, 3.0, 10.0, 100.0)
MAP = ChannelMap(
    mode="afb",
    channels=(Channel("fwd", "forward", 1.3, None), Channel("bwd", "backward", 1.0, None)),
)


def pseudo_run(rng: np.random.Generator, per_window: float) -> RunAccumulator:
    patterns = max(50, math.ceil(1000 / per_window / QUARTET.size))
    polarity = rng.choice([-1, 1], size=patterns)
    helicity = (polarity[:, None] * QUARTET[None, :]).ravel().astype(np.int8)
    mean = per_window * np.column_stack([1.3 * (1 - helicity * P * A_FB), 1 + helicity * P * A_FB])
    n = helicity.size
    decoded = DecodedWindows(
        seq=np.arange(n, dtype=np.int64),
        pattern_number=np.arange(n, dtype=np.int64) // QUARTET.size,
        helicity=helicity,
        good=np.ones(n, dtype=bool),
        beam_monitor=4e5 * (1 + 1e-4 * rng.standard_normal(n)),
        counts=rng.poisson(mean),
    )
    acc = RunAccumulator(MAP, QUARTET.size, minirun_patterns=max(2, patterns // 10))
    acc.add(decoded)
    return acc


def summary(pulls: np.ndarray) -> dict:
    finite = pulls[np.isfinite(pulls)]
    return {
        "defined": round(finite.size / pulls.size, 4),
        "pull_mean": round(float(finite.mean()), 3) if finite.size else None,
        "pull_width": round(float(finite.std(ddof=1)), 3) if finite.size > 1 else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="pseudo-runs per rate")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    figures = []
    started = time.perf_counter()
    for rate in RATES:
        pulls = {COUNTING: [], INTEGRATING: []}
        chosen = set()
        for _ in range(args.runs):
            acc = pseudo_run(rng, rate)
            chosen.add(choose_estimator(acc))
            for estimator, out in pulls.items():
                combined = run_result(acc, P, estimator=estimator).combined
                out.append((combined.value - A_FB) / combined.error)
        row = {"counts_per_window": rate, "chosen": sorted(chosen)}
        for estimator, out in pulls.items():
            row[estimator] = summary(np.array(out))
        figures.append(row)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.runs} pseudo-runs per rate, ~1000 counts per detector each")
    print(
        f"{'counts/window':>13} {'chosen':>12} | {'counting: mean width':>22} | "
        f"{'integrating: mean width (defined)':>34}"
    )
    for row in figures:
        c, i = row[COUNTING], row[INTEGRATING]
        print(
            f"{row['counts_per_window']:>13g} {','.join(row['chosen']):>12} | "
            f"{c['pull_mean']:>+10.3f} {c['pull_width']:>11.3f} | "
            f"{_text(i['pull_mean'])} {_text(i['pull_width'])} ({i['defined']:.1%})"
        )
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


def _text(x: float | None) -> str:
    return f"{'n/a':>10}" if x is None else f"{x:>+10.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
