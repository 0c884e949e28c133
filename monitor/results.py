"""Physics results from an accumulator: asymmetries corrected for polarization (pure).

``physics asymmetry = measured asymmetry / P``.  The combined A_LR is the
inverse-variance weighted mean over ``scatter`` channels; A_FB comes from the cross
ratio.  ``chi2_ndf`` is that of the minirun means about their weighted mean (NaN with
fewer than two miniruns holding data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monitor.accumulator import MinirunSums, RunAccumulator
from monitor.statistics import RunningStats, weighted_mean


@dataclass(frozen=True)
class Measurement:
    value: float
    error: float
    n: int


@dataclass(frozen=True)
class RunResult:
    """A run's (or a minirun's) results; asymmetries are plain fractions."""

    combined: Measurement
    chi2_ndf: float
    channels: dict[str, Measurement]
    charge_asymmetry: Measurement
    patterns_good: int


def _combined(stats: RunningStats, cross: RunningStats, scatter: list[int], mode: str):
    if mode == "afb":
        return float(cross.mean[0]), float(cross.error[0]), int(cross.n[0])
    value, error, _ = weighted_mean(stats.mean[scatter], stats.error[scatter])
    return value, error, int(stats.n[scatter].max()) if scatter else 0


def _measurement(value: float, error: float, n: int, polarization: float) -> Measurement:
    return Measurement(value / polarization, error / abs(polarization), n)


def minirun_result(m: MinirunSums, acc: RunAccumulator, polarization: float) -> RunResult:
    return _result(
        m.channel_asymmetry,
        m.cross_ratio,
        m.charge_asymmetry,
        m.patterns_good,
        math.nan,
        acc,
        polarization,
    )


def run_result(acc: RunAccumulator, polarization: float) -> RunResult:
    per_minirun = [minirun_result(m, acc, polarization) for m in acc.miniruns]
    values = np.array([r.combined.value for r in per_minirun])
    errors = np.array([r.combined.error for r in per_minirun])
    _, _, chi2_ndf = weighted_mean(values, errors)
    return _result(
        acc.run_stats("channel_asymmetry"),
        acc.run_stats("cross_ratio"),
        acc.run_stats("charge_asymmetry"),
        acc.good_patterns,
        chi2_ndf,
        acc,
        polarization,
    )


def _result(stats, cross, charge, patterns, chi2_ndf, acc, polarization) -> RunResult:
    cmap = acc.channel_map
    scatter = cmap.indices("scatter")
    combined = _measurement(*_combined(stats, cross, scatter, cmap.mode), polarization)
    channels = {
        c.name: _measurement(
            float(stats.mean[i]), float(stats.error[i]), int(stats.n[i]), polarization
        )
        for i, c in enumerate(cmap.channels)
    }
    charge_m = Measurement(float(charge.mean[0]), float(charge.error[0]), int(charge.n[0]))
    return RunResult(combined, chi2_ndf, channels, charge_m, patterns)
