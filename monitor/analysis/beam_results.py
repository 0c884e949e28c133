"""Helicity-correlated beam differences and regressed asymmetries from an accumulator (pure).

Everything here is *measured* (not divided by the polarization, not blinded); the
results (:mod:`mupnc.monitor.analysis.results`) turn the regressed asymmetries into
physics ones as they do the raw.

* Beam differences (:func:`beam_differences`): per variable, the mean over good patterns
  of ``(mean in + windows - mean in - windows) / 2`` (JAPAN's ``diff_``), its error and
  its width (the RMS over patterns), in the variable's unit
  (:data:`mupnc.daq.beamline.UNITS`).
* Regressed asymmetries (:func:`regressed`): the regression of
  :mod:`mupnc.monitor.analysis.regression` on the chosen variables, per detector channel
  and combined.  The combined asymmetry is that of the scatter sum (A_LR) or the cross
  ratio of the regressed forward and backward sums (A_FB), whose error treats their
  residuals as independent (conservative: the beam-monitor noise they share cancels in
  the ratio).  Slopes are given per channel and for the combined asymmetry
  (A_FB: ``(k_backward - k_forward) / 2``), in fraction per unit of the variable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.monitor.analysis.asymmetry import cross_ratio_asymmetry
from mupnc.monitor.analysis.regression import CentralMoments, Regression, regress
from mupnc.monitor.analysis.statistics import (
    Measurement,
    MeasurementTable,
    RunningStats,
    shared_keys,
)

COMBINED = "combined"


@dataclass(frozen=True, slots=True)
class BeamDifference:
    """One beam variable's helicity-correlated difference, in the variable's unit."""

    value: float
    error: float
    width: float
    n: int


@dataclass(frozen=True)
class Regressed:
    """A regression's measured asymmetries: ``channels`` by name and ``combined``;
    ``slopes`` by (channel name or :data:`COMBINED`, variable); ``skipped`` says why
    nothing was regressed (empty if it was)."""

    combined: Measurement
    channels: MeasurementTable[str]
    slopes: MeasurementTable[tuple[str, str]]
    skipped: str = ""


def beam_differences(stats: RunningStats, variables: tuple[str, ...]) -> dict[str, BeamDifference]:
    """Per variable, from the statistics of the per-pattern differences."""
    out = {}
    for i, name in enumerate(variables):
        n = int(stats.n[i])
        width = float(np.sqrt(stats.variance[i])) if n > 1 else math.nan
        value = float(stats.mean[i]) if n else math.nan
        out[name] = BeamDifference(value, float(stats.error[i]) if n > 1 else math.nan, width, n)
    return out


def regressed(
    moments: CentralMoments,
    channels: list[str],
    groups: list[str],
    variables: tuple[str, ...],
    chosen: list[int],
    resolution: np.ndarray | None = None,
) -> Regressed:
    """The regression of every target on the variables ``chosen`` (indices into
    ``variables``); targets are ``channels`` then ``groups`` (``scatter``, or ``forward``
    and ``backward``); ``resolution``: the monitors' per-window noise covariance of all
    ``variables`` (:meth:`mupnc.daq.beamline.BeamLine.noise_covariance`)."""
    noise = None if resolution is None else resolution[np.ix_(chosen, chosen)]
    r = regress(moments.select(chosen), noise)
    c = len(channels)
    names = [variables[i] for i in chosen]
    per_channel: MeasurementTable[str] = MeasurementTable(
        shared_keys(tuple(channels)), r.asymmetry[:c], r.error[:c], r.n
    )
    combined, combined_slopes = _combined(r, c, groups)
    keys = [(channel, variable) for channel in channels for variable in names]
    keys += [(COMBINED, variable) for variable in names]
    values, errors = np.array(combined_slopes, dtype=np.float64).reshape(-1, 2).T
    slopes: MeasurementTable[tuple[str, str]] = MeasurementTable(
        shared_keys(tuple(keys)),
        np.concatenate([r.slopes[:, :c].T.ravel(), values]),
        np.concatenate([r.slope_errors[:, :c].T.ravel(), errors]),
        r.n,
    )
    return Regressed(combined, per_channel, slopes, r.ill_conditioned)


def _combined(
    r: Regression, c: int, groups: list[str]
) -> tuple[Measurement, list[tuple[float, float]]]:
    """The combined regressed asymmetry and its slopes from the group targets."""
    v = r.slopes.shape[0]
    if groups == ["scatter"]:
        slopes = [(float(r.slopes[i, c]), float(r.slope_errors[i, c])) for i in range(v)]
        return Measurement(float(r.asymmetry[c]), float(r.error[c]), r.n), slopes
    if groups != ["forward", "backward"]:
        return Measurement(math.nan, math.nan, r.n), [(math.nan, math.nan)] * v
    a_f, a_b = float(r.asymmetry[c]), float(r.asymmetry[c + 1])
    value = float(_cross(a_f, a_b))
    step = 1e-6
    d_f = (_cross(a_f + step, a_b) - _cross(a_f - step, a_b)) / (2 * step)
    d_b = (_cross(a_f, a_b + step) - _cross(a_f, a_b - step)) / (2 * step)
    error = float(math.hypot(d_f * r.error[c], d_b * r.error[c + 1]))
    slopes = [
        (
            float((r.slopes[i, c + 1] - r.slopes[i, c]) / 2),
            float(math.hypot(r.slope_errors[i, c], r.slope_errors[i, c + 1]) / 2),
        )
        for i in range(v)
    ]
    return Measurement(value, error, r.n), slopes


def _cross(a_forward: float, a_backward: float) -> float:
    """The cross-ratio asymmetry of forward and backward yield asymmetries."""
    f, b = np.array([1 + a_forward, 1 - a_forward]), np.array([1 + a_backward, 1 - a_backward])
    return float(cross_ratio_asymmetry(f[:1], f[1:], b[:1], b[1:])[0])
