"""Physics results from an accumulator: asymmetries corrected for polarization (pure).

``physics asymmetry = measured asymmetry / P``, then blinded
(:mod:`mupnc.monitor.analysis.blinding`;
identity for unblinded runs).  The combined A_LR is the inverse-variance weighted mean
over ``scatter`` channels; A_FB comes from the cross ratio.  ``chi2_ndf`` is that of the
minirun means about their weighted mean (NaN with fewer than two miniruns holding data),
and ``pulls`` are the minirun means' ``(value - weighted mean) / error``; both leave out a
minirun holding less than half a minirun of patterns (NaN pull,
:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`).

The beam charge asymmetry and the null asymmetries are *measured* asymmetries: neither
divided by P nor blinded (both should be compatible with 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from mupnc.monitor.analysis.accumulator import MinirunSums, RunAccumulator
from mupnc.monitor.analysis.blinding import ANALYZING_SIGN, UNBLINDED, Blinder
from mupnc.monitor.analysis.statistics import RunningStats, pulled_miniruns, weighted_mean

COMBINED = "combined"
"""Key of the combined asymmetry in :attr:`RunResult.pulls` and ``channel_chi2_ndf``."""


@dataclass(frozen=True)
class Measurement:
    value: float
    error: float
    n: int


@dataclass(frozen=True)
class RunResult:
    """A run's (or a minirun's) results; asymmetries are plain fractions.

    ``null`` maps a null-asymmetry name (``null_half``, ``null_even_odd``) to its
    combined value; ``pulls`` maps a channel name (or :data:`COMBINED`) to the pull of
    each minirun's mean, in minirun order (NaN for a minirun without data), and
    ``channel_chi2_ndf`` the same keys to chi2/ndf of those minirun means.  ``miniruns``
    holds each minirun's own result (same blinding), empty in a minirun's result.
    """

    combined: Measurement
    chi2_ndf: float
    channels: dict[str, Measurement]
    charge_asymmetry: Measurement
    patterns_good: int
    null: dict[str, Measurement] = field(default_factory=dict)
    blinded: bool = False
    blinding_checksum: str = ""
    pulls: dict[str, tuple[float, ...]] = field(default_factory=dict)
    channel_chi2_ndf: dict[str, float] = field(default_factory=dict)
    miniruns: tuple[RunResult, ...] = ()


def _stats_measurement(stats: RunningStats, column: int) -> tuple[float, float, int]:
    return float(stats.mean[column]), float(stats.error[column]), int(stats.n[column])


def _combined(
    stats: RunningStats, cross: RunningStats, column: int, acc: RunAccumulator
) -> tuple[float, float, int]:
    """Combined value of column ``column`` of the cross ratio (A_FB) or of the scatter set."""
    if acc.channel_map.mode == "afb":
        return _stats_measurement(cross, column)
    c = acc.n_channels
    scatter = [column * c + i for i in acc.channel_map.indices("scatter")]
    value, error, _ = weighted_mean(stats.mean[scatter], stats.error[scatter])
    return value, error, int(stats.n[scatter].max()) if scatter else 0


def _physics(value: float, error: float, n: int, polarization: float) -> Measurement:
    return Measurement(value / polarization, error / abs(polarization), n)


def minirun_result(
    m: MinirunSums, acc: RunAccumulator, polarization: float, blinder: Blinder = UNBLINDED
) -> RunResult:
    return _result(m, m.patterns_good, acc, polarization, blinder)


def run_result(acc: RunAccumulator, polarization: float, blinder: Blinder = UNBLINDED) -> RunResult:
    per_minirun = tuple(minirun_result(m, acc, polarization, blinder) for m in acc.miniruns)
    merged = _MergedSums(acc)
    result = _result(merged, acc.good_patterns, acc, polarization, blinder)
    keys = [COMBINED, *acc.channel_map.names]
    pulled = pulled_miniruns([m.patterns_good for m in acc.miniruns], acc.minirun_patterns)
    pulls, chi2 = {}, {}
    for key in keys:
        values = np.array([_pick(r, key).value for r in per_minirun])
        errors = np.array([_pick(r, key).error for r in per_minirun])
        mean, _, chi2[key] = weighted_mean(values[pulled], errors[pulled])
        with np.errstate(invalid="ignore", divide="ignore"):
            pull = np.where(pulled & (errors > 0), (values - mean) / errors, np.nan)
        pulls[key] = tuple(float(x) for x in pull)
    return replace(
        result,
        chi2_ndf=chi2[COMBINED],
        pulls=pulls,
        channel_chi2_ndf=chi2,
        miniruns=per_minirun,
    )


def _pick(result: RunResult, key: str) -> Measurement:
    return result.combined if key == COMBINED else result.channels[key]


class _MergedSums:
    """The run-level running statistics, with the attribute names of :class:`MinirunSums`."""

    def __init__(self, acc: RunAccumulator) -> None:
        self.channel_asymmetry = acc.run_stats("channel_asymmetry")
        self.cross_ratio = acc.run_stats("cross_ratio")
        self.charge_asymmetry = acc.run_stats("charge_asymmetry")
        self.null_asymmetry = acc.run_stats("null_asymmetry")
        self.null_cross_ratio = acc.run_stats("null_cross_ratio")


def _result(
    sums: MinirunSums | _MergedSums,
    patterns: int,
    acc: RunAccumulator,
    polarization: float,
    blinder: Blinder,
) -> RunResult:
    stats, cross = sums.channel_asymmetry, sums.cross_ratio
    combined = _physics(*_combined(stats, cross, 0, acc), polarization)
    combined = Measurement(blinder.blind(combined.value), combined.error, combined.n)
    channels = {}
    mean, error = stats.mean, stats.error  # error is computed on each access
    for i, c in enumerate(acc.channel_map.channels):
        m = _physics(float(mean[i]), float(error[i]), int(stats.n[i]), polarization)
        value = blinder.blind(m.value, ANALYZING_SIGN[c.role])
        channels[c.name] = Measurement(value, m.error, m.n)
    null = {
        name: Measurement(*_combined(sums.null_asymmetry, sums.null_cross_ratio, k, acc))
        for k, name in enumerate(acc.null_names)
    }
    charge = Measurement(*_stats_measurement(sums.charge_asymmetry, 0))
    return RunResult(
        combined=combined,
        chi2_ndf=math.nan,
        channels=channels,
        charge_asymmetry=charge,
        patterns_good=patterns,
        null=null,
        blinded=blinder.blinded,
        blinding_checksum=blinder.checksum,
    )
