"""Physics results from an accumulator: asymmetries corrected for polarization (pure).

``physics asymmetry = measured asymmetry / (P * analysing power)``, then blinded
(:mod:`mupnc.monitor.analysis.blinding`; identity for unblinded runs).  The analysing
power (:func:`analysing_power`) is 1 for fast and slow reversal; for the ring kick it is
measured from the turn readback of the good windows.  A run with a polarimeter divides by
the polarization it measures instead (:class:`SpinSeparation`).

Two estimators, chosen per run from its counts (:func:`choose_estimator`):

* ``integrating`` (JAPAN): asymmetries formed per pattern from beam-normalised yields, the
  run value their mean, the error their RMS over sqrt(n).  Right where every pattern has
  many counts: it carries any noise (beam-monitor resolution, electronics) in its spread.
  The combined asymmetry is formed per pattern too (A_LR: the yield asymmetry of the
  summed scatter yields; A_FB: the cross ratio of the summed forward and backward yields),
  so noise common to the channels gives the right combined error.
* ``counting``: below :data:`COUNTING_LIMIT` counts per analysed channel per window, a
  pattern's ratio is biased or undefined (a pattern without counts has no asymmetry: at
  the muonic-atom rate most have none).  The asymmetries are then formed from the counts
  of good patterns summed per spin state over the minirun or run, with Poisson errors
  (:func:`mupnc.monitor.analysis.asymmetry.counted_yield_asymmetry`,
  :func:`mupnc.monitor.analysis.asymmetry.counted_cross_ratio_asymmetry`).  Pure Poisson
  is right there: per window, the beam-monitor noise is far below the counting noise.

An undefined result (no counts in a spin state, nothing analysed yet) is NaN, never 0 or
±1.  ``chi2_ndf`` is that of the
minirun means about their weighted mean (NaN with fewer than two miniruns holding data),
and ``pulls`` are the minirun means' ``(value - weighted mean) / error``; both leave out a
minirun holding less than half a minirun of patterns (NaN pull,
:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`).  A minirun's integrating error
comes from the run's pooled per-pattern spread (:func:`pooled_sd`), so short miniruns
(the slow schemes' 16 rotator patterns) give unbiased chi2/ndf.

The beam charge asymmetry and the null asymmetries are *measured* asymmetries: neither
divided by P nor blinded (both should be compatible with 0).  The combined null
asymmetries follow the run's estimator: per pattern (integrating), or from the good
windows' counts summed by the null's sign (counting), so they stay defined at the
muonic-atom rate.

Beam modulation (:mod:`mupnc.monitor.analysis.modulation`): the sensitivities of every
cycle, and the run's (their weighted mean), correct each minirun and the run alike:
``A_dit = A_raw - sum_v beta_v dX_v`` on the patterns of the regression sums (``A_raw`` the
ratio of mean half-difference and mean half-sum yields, as the regression's), then divided
by P and blinded as the regressed asymmetries.  The run's value is corrected from the run's
pooled sums (not a mean of the miniruns': the error of ``beta`` is common to all of them).
Each cycle's regression-minus-dithering slopes compare it with the regression of the
minirun its windows came with (the slopes nearest in time), when the regression is on every
measured variable (a regression on fewer variables has other slopes).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mupnc.daq.channel_map import POLARIMETER_ROLES
from mupnc.monitor.analysis.accumulator import MinirunSums, RunAccumulator
from mupnc.monitor.analysis.asymmetry import (
    counted_cross_ratio_asymmetry,
    counted_yield_asymmetry,
)
from mupnc.monitor.analysis.beam_results import (
    BeamDifference,
    Regressed,
    beam_differences,
    regressed,
)
from mupnc.monitor.analysis.blinding import ANALYZING_SIGN, UNBLINDED, Blinder
from mupnc.monitor.analysis.modulation import (
    DitherCycle,
    Dithering,
    Layout,
    dither,
    dithered_moments,
    merge_cycles,
)
from mupnc.monitor.analysis.polarimetry import (
    Polarimeter,
    Polarization,
    measure,
    with_scale_error,
)
from mupnc.monitor.analysis.regression import CentralMoments, CrossMoments
from mupnc.monitor.analysis.statistics import (
    Measurement,
    MeasurementTable,
    RunningStats,
    pulled_miniruns,
    shared_keys,
    stacked,
    weighted_mean,
    weighted_means,
)

COMBINED = "combined"
"""Key of the combined asymmetry in :attr:`RunResult.pulls` and ``channel_chi2_ndf``."""
INTEGRATING, COUNTING = "integrating", "counting"
COUNTING_LIMIT = 100.0
"""Mean counts per analysed channel (scatter, or forward and backward) per good window
below which a run is analysed by counting.  Above it a pattern's ratio has a relative bias
below ~1e-3 (a quartet holds > 400 counts per channel) and the integrating estimator is
exact; below it the counting estimator is (its Poisson error neglects the beam-monitor
noise, a relative 1e-2 per window at most: < 1 % of the counting error at 100 counts)."""


@dataclass(frozen=True)
class RunResult:
    """A run's (or a minirun's) results; asymmetries are plain fractions.

    ``null`` maps a null-asymmetry name (``null_half``, ``null_even_odd``) to its
    combined value; ``pulls`` maps a channel name (or :data:`COMBINED`) to the pull of
    each minirun's mean, in minirun order (NaN for a minirun without data), and
    ``channel_chi2_ndf`` the same keys to chi2/ndf of those minirun means.  ``miniruns``
    holds each minirun's own result (same blinding), empty in a minirun's result.

    The beam (:mod:`mupnc.monitor.analysis.beam_results`): ``beam`` maps each measured beam
    variable to its helicity-correlated difference; ``regressed`` (None when no variable
    is regressed) and ``regressed_channels`` are the physics asymmetries corrected by the
    regression on ``regressed_variables``, each minirun with its own slopes, a run's value
    the weighted mean of its miniruns' (``regressed_chi2_ndf``); ``slopes`` maps (channel or
    :data:`COMBINED`, variable) to the measured asymmetry's slope (fraction per unit; a
    run's pooled over its miniruns); ``regression_skipped`` says which miniruns were not
    regressed and why; ``patterns_beam_cut`` counts patterns cut for a beam monitor out of
    its range.

    Beam modulation (:mod:`mupnc.monitor.analysis.modulation`): ``dithered`` (None when the
    run has no modulation cycle) and ``dithered_channels`` are the physics asymmetries
    corrected with the run's dithering sensitivities ``dither_sensitivities`` (by channel or
    :data:`COMBINED` and variable, fraction per unit; NaN and ``dither_skipped`` when no
    cycle is usable; a minirun's result leaves them out); ``dither_cycles`` holds every
    cycle's own analysis (a minirun's result: the cycles that came with its windows), with
    its regression-minus-dithering slopes, and ``dither_difference`` the run's (its pooled
    regression slopes minus its sensitivities); ``patterns_modulation`` counts patterns cut
    for a modulation window.

    Polarimetry (:mod:`mupnc.monitor.analysis.polarimetry`; a run whose channel map has the
    polarimeter's counters): ``polarization`` is the measured one (the run's, or a
    minirun's own), and every physics asymmetry of the run and its miniruns is divided by
    the run's measured effective polarization (``polarization_source`` ``measured``; the
    run's combined, regressed and dithered asymmetries carry that division's error);
    ``configured_combined`` is the combined asymmetry divided by the configured
    polarization instead, for comparison.  Without counters: ``configured``.
    """

    combined: Measurement
    chi2_ndf: float
    channels: Mapping[str, Measurement]
    charge_asymmetry: Measurement
    patterns_good: int
    null: dict[str, Measurement] = field(default_factory=dict)
    blinded: bool = False
    blinding_checksum: str = ""
    estimator: str = INTEGRATING
    pulls: dict[str, tuple[float, ...]] = field(default_factory=dict)
    channel_chi2_ndf: dict[str, float] = field(default_factory=dict)
    miniruns: tuple[RunResult, ...] = ()
    beam: dict[str, BeamDifference] = field(default_factory=dict)
    regressed: Measurement | None = None
    regressed_chi2_ndf: float = math.nan
    regressed_channels: Mapping[str, Measurement] = field(default_factory=dict)
    regressed_variables: tuple[str, ...] = ()
    slopes: Mapping[tuple[str, str], Measurement] = field(default_factory=dict)
    regression_skipped: str = ""
    patterns_beam_cut: int = 0
    dithered: Measurement | None = None
    dithered_channels: Mapping[str, Measurement] = field(default_factory=dict)
    dither_sensitivities: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    dither_cycles: tuple[DitherCycle, ...] = ()
    dither_difference: dict[tuple[str, str], Measurement] = field(default_factory=dict)
    dither_skipped: str = ""
    patterns_modulation: int = 0
    polarization: Polarization | None = None
    polarization_source: str = "configured"
    configured_combined: Measurement | None = None


def _stats_measurement(
    stats: RunningStats, column: int, pooled_sd: np.ndarray | None = None
) -> tuple[float, float, int]:
    """Mean, error and count of one column; the error from ``pooled_sd`` when given."""
    n = int(stats.n[column])
    if n == 0:
        return math.nan, math.nan, 0
    error = stats.error[column] if pooled_sd is None else pooled_sd[column] / math.sqrt(n)
    if not error > 0:  # one pattern, or identical ones: no error, so no value either
        return math.nan, math.nan, n
    return float(stats.mean[column]), float(error), n


def _stats_table(
    stats: RunningStats, layout: tuple, pooled_sd: np.ndarray | None = None
) -> MeasurementTable:
    """:func:`_stats_measurement` of every column, keyed by ``layout``."""
    n = stats.n
    with np.errstate(invalid="ignore", divide="ignore"):
        error = stats.error if pooled_sd is None else pooled_sd / np.sqrt(n)
        defined = (n > 0) & (error > 0)
    return MeasurementTable(
        layout,
        np.where(defined, stats.mean, math.nan),
        np.where(defined, error, math.nan),
        n.astype(np.int64),
    )


def _channel_keys(acc: RunAccumulator) -> tuple[str, ...]:
    return shared_keys(tuple(acc.channel_map.names))


def _physics_channels(
    measured: MeasurementTable[str], acc: RunAccumulator, separating: float, blinder: Blinder
) -> MeasurementTable[str]:
    """Per detector channel, the reported physics asymmetries of ``measured`` ones: divided
    by the spin separation and blinded with the channel's analysing sign (as
    :func:`_physics` and :meth:`Blinder.blind` do one)."""
    signs = np.array([ANALYZING_SIGN[c.role] for c in acc.channel_map.channels], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = measured.value_array / separating
        errors = measured.error_array / abs(separating)
    return MeasurementTable(measured.layout, blinder.blind(values, signs), errors, measured.n)


def pooled_sd(acc: RunAccumulator, attribute: str) -> np.ndarray:
    """Within-minirun pooled standard deviation of the per-pattern values of one
    :class:`MinirunSums` attribute, per column: ``sqrt(sum m2 / (sum n - miniruns))``.

    A minirun's integrating error is ``pooled_sd / sqrt(n)``, not its own spread over
    ``sqrt(n)``: the spread of a short minirun (16 rotator patterns of the slow schemes, a
    minirun just begun) is itself uncertain, so its pulls follow Student's t, not a normal,
    and chi2/ndf of minirun means is inflated (1.33 at 16 pairs).  Pooling within miniruns
    keeps a real shift between minirun means visible in chi2/ndf."""
    stats = [getattr(m, attribute) for m in acc.miniruns]
    m2 = np.sum([s.m2 for s in stats], axis=0)
    dof = np.sum([np.maximum(s.n - 1, 0) for s in stats], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(dof > 0, np.sqrt(m2 / dof), np.nan)


def analysed_channels(acc: RunAccumulator) -> list[int]:
    """The channels an asymmetry is formed from: forward and backward (A_FB) or scatter."""
    cm = acc.channel_map
    return cm.indices("forward") + cm.indices("backward") if acc.afb else cm.indices("scatter")


def choose_estimator(acc: RunAccumulator) -> str:
    """:data:`COUNTING` below :data:`COUNTING_LIMIT` counts per analysed channel per good
    window (over the run so far), else :data:`INTEGRATING`."""
    channels = analysed_channels(acc)
    counts = sum(int(m.good_counts[:, channels].sum()) for m in acc.miniruns)
    windows = sum(int(m.good_windows.sum()) for m in acc.miniruns)
    if not channels or windows == 0:
        return INTEGRATING
    return COUNTING if counts / (windows * len(channels)) < COUNTING_LIMIT else INTEGRATING


def _counted(
    sums: MinirunSums | _MergedSums, acc: RunAccumulator
) -> tuple[Measurement, MeasurementTable]:
    """Combined and per-channel measured asymmetries by counting (see the module doc)."""
    n_plus, n_minus = sums.good_counts
    q_plus, q_minus = sums.good_beam_monitor
    values, errors = counted_yield_asymmetry(n_plus, n_minus, q_plus, q_minus)
    n = sums.patterns_good
    channels: MeasurementTable[str] = MeasurementTable(_channel_keys(acc), values, errors, n)
    cm = acc.channel_map
    if acc.afb:
        f, b = cm.indices("forward"), cm.indices("backward")
        f_plus, f_minus = (int(x) for x in sums.good_counts[:, f].sum(axis=1))
        b_plus, b_minus = (int(x) for x in sums.good_counts[:, b].sum(axis=1))
        value, error = counted_cross_ratio_asymmetry(f_plus, f_minus, b_plus, b_minus)
    else:
        scatter = cm.indices("scatter")
        summed = sums.good_counts[:, scatter].sum(axis=1)
        a, e = counted_yield_asymmetry(summed[0], summed[1], q_plus, q_minus)
        value, error = float(a), float(e)
    return Measurement(value, error, n), channels


def _counted_nulls(sums: MinirunSums | _MergedSums, acc: RunAccumulator) -> dict:
    """The combined null asymmetries by counting: the counts of the good windows summed by
    each null kind's sign instead of the helicity (measured asymmetries, not divided by P)."""
    cm = acc.channel_map
    out = {}
    for k, name in enumerate(acc.null_names):
        counts, (q_plus, q_minus) = sums.good_null_counts[k], sums.good_null_beam_monitor[k]
        if acc.afb:
            f_plus, f_minus = (int(x) for x in counts[:, cm.indices("forward")].sum(axis=1))
            b_plus, b_minus = (int(x) for x in counts[:, cm.indices("backward")].sum(axis=1))
            value, error = counted_cross_ratio_asymmetry(f_plus, f_minus, b_plus, b_minus)
        else:
            summed = counts[:, cm.indices("scatter")].sum(axis=1)
            a, e = counted_yield_asymmetry(summed[0], summed[1], q_plus, q_minus)
            value, error = float(a), float(e)
        out[name] = Measurement(value, error, sums.patterns_good)
    return out


def analysing_power(sums: MinirunSums | _MergedSums) -> float:
    """How much of the beam polarization P separates the two spin states:
    ``(<P_L/P>+ - <P_L/P>-) / 2`` over the good windows of each helicity.  1 for fast and
    slow reversal; for the ring kick ``(cos(phi t+) - cos(phi t-)) / 2`` of the turn
    readback (0.978 at turns (1, 14) and 12 deg per turn); NaN before any good window."""
    windows = sums.good_windows.astype(np.float64)
    if not (windows > 0).all():
        return math.nan
    plus, minus = sums.good_analysing_power / windows
    return float(plus - minus) / 2.0


def _physics(value: float, error: float, n: int, polarization: float) -> Measurement:
    return Measurement(value / polarization, error / abs(polarization), n)


@dataclass(frozen=True)
class SpinSeparation:
    """How much polarization separates the two spin states in the detectors' asymmetries:
    the ``measured`` effective polarization when the run's polarimeter gives one (it sees
    the spin the muons had, a kick's precession included), else the ``configured``
    polarization times the reversal's :func:`analysing_power` of the sums."""

    configured: float
    measured: Measurement | None = None

    @property
    def source(self) -> str:
        """``measured`` or ``configured``: what the physics asymmetries are divided by."""
        return "configured" if self.measured is None else "measured"

    def of(self, sums: MinirunSums | _MergedSums) -> float:
        if self.measured is not None:
            return self.measured.value
        return self.configured * analysing_power(sums)


def run_result(
    acc: RunAccumulator,
    polarization: float,
    blinder: Blinder = UNBLINDED,
    estimator: str | None = None,
    regress: tuple[str, ...] | None = None,
) -> RunResult:
    """The run's result and each minirun's, by ``estimator`` (None: :func:`choose_estimator`),
    regressed on the beam variables ``regress`` (None: every one the monitors measure; an
    empty tuple: none)."""
    estimator = estimator or choose_estimator(acc)
    pooled = None
    if estimator == INTEGRATING:
        pooled = {name: pooled_sd(acc, name) for name in ("combined", "channel_asymmetry")}
    chosen = chosen_variables(acc, regress)
    dithering = modulation_analysis(acc)
    merged, polarimeter, measured, separation = _run_sums(acc, polarization)
    per_minirun = tuple(
        _with_dithering(
            _with_beam(
                _result(m, acc, separation, blinder, estimator, pooled),
                m,
                acc,
                chosen,
                separation,
                blinder,
            ),
            m,
            acc,
            dithering,
            separation.of(m),
            blinder,
        )
        for m in acc.miniruns
    )
    if polarimeter is not None:
        per_minirun = tuple(
            replace(r, polarization=measure(m.good_counts, polarimeter, m.patterns_good))
            for r, m in zip(per_minirun, acc.miniruns, strict=True)
        )
    result = _result(merged, acc, separation, blinder, estimator)
    result = _run_beam(result, per_minirun, acc, chosen)
    result, per_minirun = _run_dithering(
        result, per_minirun, acc, dithering, separation.of(merged), blinder
    )
    if measured is not None:
        result = _with_polarization(result, measured, separation, merged, acc, blinder, estimator)
        counters = {c.name for c in acc.channel_map.channels if c.role in POLARIMETER_ROLES}
        result = _without(result, counters)
        per_minirun = tuple(_without(r, counters) for r in per_minirun)
    layout = tuple(result.channels)
    keys = [COMBINED, *layout]
    pulled = pulled_miniruns([m.patterns_good for m in acc.miniruns], acc.minirun_patterns)
    channel_values, channel_errors = stacked([r.channels for r in per_minirun], layout)
    values = np.column_stack([[r.combined.value for r in per_minirun], channel_values])
    errors = np.column_stack([[r.combined.error for r in per_minirun], channel_errors])
    mean, _, chi2_ndf = weighted_means(values[pulled], errors[pulled])
    with np.errstate(invalid="ignore", divide="ignore"):
        pull = np.where(pulled[:, None] & (errors > 0), (values - mean) / errors, np.nan)
    pulls = {key: tuple(column) for key, column in zip(keys, pull.T.tolist(), strict=True)}
    chi2 = dict(zip(keys, chi2_ndf.tolist(), strict=True))
    return replace(
        result,
        chi2_ndf=chi2[COMBINED],
        pulls=pulls,
        channel_chi2_ndf=chi2,
        miniruns=per_minirun,
    )


def run_combined(
    acc: RunAccumulator,
    polarization: float,
    blinder: Blinder = UNBLINDED,
    estimator: str | None = None,
) -> RunResult:
    """The run's own combined and charge asymmetries, the combined one exactly as
    :func:`run_result` gives it (divided by the measured polarization, with its error), and
    nothing else to rely on: no minirun, χ² (NaN), regression or dithering, and the
    polarimeter's counters still among the channels.  What the monitor publishes between
    its full results: a few ms where :func:`run_result` takes tens at 512 channels."""
    estimator = estimator or choose_estimator(acc)
    merged, _, measured, separation = _run_sums(acc, polarization)
    result = _result(merged, acc, separation, blinder, estimator)
    if measured is not None and separation.measured is not None:
        result = replace(result, combined=with_scale_error(result.combined, separation.measured))
    return result


def _run_sums(
    acc: RunAccumulator, polarization: float
) -> tuple[_MergedSums, Polarimeter | None, Polarization | None, SpinSeparation]:
    """The run's merged sums, its polarimeter, the polarization it measures and the spin
    separation the asymmetries are divided by."""
    merged = _MergedSums(acc)
    polarimeter = Polarimeter.of(acc.channel_map)
    measured = None
    if polarimeter is not None:
        measured = measure(merged.good_counts, polarimeter, merged.patterns_good)
    return merged, polarimeter, measured, _separation(polarization, measured)


def _separation(configured: float, measured: Polarization | None) -> SpinSeparation:
    """The measured effective polarization when the run has a polarimeter (NaN while it
    has no counts or shows no separation: the physics asymmetries are then undefined,
    never divided by the configured value behind the shift's back)."""
    if measured is None:
        return SpinSeparation(configured)
    effective = measured.effective
    if not effective.value > 0:
        effective = Measurement(math.nan, math.nan, effective.n)
    return SpinSeparation(configured, effective)


def _with_polarization(
    result: RunResult,
    measured: Polarization,
    separation: SpinSeparation,
    merged: _MergedSums,
    acc: RunAccumulator,
    blinder: Blinder,
    estimator: str,
) -> RunResult:
    """The run's result divided by the measured polarization: its polarimetry, the error
    of the division added to the run's combined, regressed and dithered asymmetries, and
    the combined asymmetry as the configured polarization would give it."""
    scale = separation.measured
    assert scale is not None
    configured = _result(merged, acc, SpinSeparation(separation.configured), blinder, estimator)

    def scaled(m: Measurement | None) -> Measurement | None:
        return None if m is None else with_scale_error(m, scale)

    return replace(
        result,
        combined=with_scale_error(result.combined, scale),
        regressed=scaled(result.regressed),
        dithered=scaled(result.dithered),
        polarization=measured,
        polarization_source=separation.source,
        configured_combined=configured.combined,
    )


def _without(result: RunResult, counters: set[str]) -> RunResult:
    """``result`` without the physics asymmetries of the polarimeter's counters (theirs
    measure the polarization, :class:`Polarization`)."""

    def keep(key: object) -> bool:
        return (key[0] if isinstance(key, tuple) else key) not in counters

    def kept(table: Any) -> Any:
        if isinstance(table, MeasurementTable):
            return table.restricted(keep)
        return {k: v for k, v in table.items() if keep(k)}

    return replace(
        result,
        channels=kept(result.channels),
        regressed_channels=kept(result.regressed_channels),
        dithered_channels=kept(result.dithered_channels),
        slopes=kept(result.slopes),
        dither_sensitivities=kept(result.dither_sensitivities),
        dither_difference=kept(result.dither_difference),
    )


def chosen_variables(acc: RunAccumulator, regress: tuple[str, ...] | None) -> list[int]:
    """Indices of the beam variables to regress on; ``ValueError`` names one the run's
    monitors do not measure."""
    measured = acc.beamline.variables
    if regress is None:
        return list(range(len(measured)))
    for name in regress:
        if name not in measured:
            known = ", ".join(measured) or "none: the channel map has no beam position monitors"
            raise ValueError(
                f"beam variable {name!r} is not measured in this run (measured: {known})"
            )
    return [measured.index(name) for name in regress]


def _with_beam(
    result: RunResult,
    m: MinirunSums,
    acc: RunAccumulator,
    chosen: list[int],
    separation: SpinSeparation,
    blinder: Blinder,
) -> RunResult:
    """A minirun's result with its beam differences and its own regression."""
    variables = acc.beamline.variables
    beam = beam_differences(m.beam_difference, variables)
    if not chosen:
        return replace(result, beam=beam, patterns_beam_cut=m.patterns_beam_cut)
    fit = _minirun_fit(m.regression, acc, chosen)
    separating = separation.of(m)
    combined = _physics(fit.combined.value, fit.combined.error, fit.combined.n, separating)
    channels = _physics_channels(fit.channels, acc, separating, blinder)
    return replace(
        result,
        beam=beam,
        regressed=replace(combined, value=blinder.blind(combined.value)),
        regressed_channels=channels,
        regressed_variables=tuple(variables[i] for i in chosen),
        slopes=fit.slopes,
        regression_skipped=fit.skipped,
        patterns_beam_cut=m.patterns_beam_cut,
    )


_FITS: dict[int, tuple] = {}
"""Each minirun's regression fit, by the identity of its sums (dropped with them), with
what it was made from.  A complete minirun's sums no longer change, so the result a monitor
makes every second refits only the minirun being filled: the fit of 512 channels on 5
variables is most of a minirun's result, and an hour at MOLLER scale has ~200 miniruns."""


def _minirun_fit(sums: CrossMoments, acc: RunAccumulator, chosen: list[int]) -> Regressed:
    """:func:`regressed` of a minirun's ``sums`` on the variables ``chosen``, made again
    only when the sums took patterns since the last call (the same numbers either way:
    :meth:`CrossMoments.add` is their only change, and it counts ``rows``)."""
    noise = acc.beamline.noise_covariance()
    cached = _FITS.get(id(sums))
    if (
        cached is not None
        and cached[0] == (tuple(chosen), sums.rows)
        and np.array_equal(cached[1], noise)
    ):
        return cached[2]
    fit = regressed(
        sums.central(),
        acc.channel_map.names,
        list(acc.target_groups),
        acc.beamline.variables,
        chosen,
        noise,
    )
    if id(sums) not in _FITS:
        weakref.finalize(sums, _FITS.pop, id(sums), None)
    _FITS[id(sums)] = ((tuple(chosen), sums.rows), noise.copy(), fit)
    return fit


def _run_beam(
    result: RunResult, per_minirun: tuple[RunResult, ...], acc: RunAccumulator, chosen: list[int]
) -> RunResult:
    """The run's beam differences, regressed asymmetries (weighted means of the miniruns')
    and pooled slopes."""
    variables = acc.beamline.variables
    beam = beam_differences(acc.run_stats("beam_difference"), variables)
    cut = sum(m.patterns_beam_cut for m in acc.miniruns)
    if not chosen:
        return replace(result, beam=beam, patterns_beam_cut=cut)
    pooled = acc.miniruns[0].regression.central()
    for m in acc.miniruns[1:]:
        pooled = pooled.merge(m.regression.central())
    fit = regressed(
        pooled,
        acc.channel_map.names,
        list(acc.target_groups),
        variables,
        chosen,
        acc.beamline.noise_covariance(),
    )
    n = sum(r.regressed.n for r in per_minirun if r.regressed is not None)

    combined, chi2 = _minirun_mean([r.regressed for r in per_minirun], n)
    layout = _channel_keys(acc)
    values, errors = stacked([r.regressed_channels for r in per_minirun], layout)
    means, mean_errors, _ = weighted_means(values, errors)
    channels: MeasurementTable[str] = MeasurementTable(layout, means, mean_errors, n)
    skipped = [r.regression_skipped for r in per_minirun if r.regression_skipped]
    note = ""
    if skipped:
        note = f"{len(skipped)} of {len(per_minirun)} miniruns not regressed (last: {skipped[-1]})"
    return replace(
        result,
        beam=beam,
        regressed=combined,
        regressed_chi2_ndf=chi2,
        regressed_channels=channels,
        regressed_variables=tuple(variables[i] for i in chosen),
        slopes=fit.slopes,
        regression_skipped=note,
        patterns_beam_cut=cut,
    )


def modulation_analysis(acc: RunAccumulator) -> Dithering | None:
    """Every modulation cycle of the run and the run's sensitivities (None: the run has no
    coils, or no cycle yet); a cycle's minirun is the first holding its windows."""
    if not acc.coil_columns:
        return None
    cycles: dict = {}
    minirun_of: dict[int, int] = {}
    for m in acc.miniruns:
        own = m.modulation.moments()
        for cycle in own:
            minirun_of.setdefault(cycle, m.index)
        cycles = merge_cycles(cycles, own)
    if not cycles:
        return None
    layout = Layout(
        acc.coil_names,
        acc.beamline.variables,
        tuple(acc.channel_map.names),
        tuple(acc.target_groups),
    )
    return dither(cycles, layout, minirun_of)


def _dithered_result(
    result: RunResult,
    moments: CentralMoments,
    acc: RunAccumulator,
    dithering: Dithering,
    separating: float,
    blinder: Blinder,
) -> RunResult:
    """``result`` with the dithering-corrected physics asymmetries of ``moments``."""
    fit = dithered_moments(moments, dithering)
    combined = _physics(fit.combined.value, fit.combined.error, fit.combined.n, separating)
    channels = _physics_channels(fit.channels, acc, separating, blinder)
    return replace(
        result,
        dithered=replace(combined, value=blinder.blind(combined.value)),
        dithered_channels=channels,
        dither_skipped=fit.skipped,
    )


def _with_dithering(
    result: RunResult,
    m: MinirunSums,
    acc: RunAccumulator,
    dithering: Dithering | None,
    separating: float,
    blinder: Blinder,
) -> RunResult:
    """A minirun's result with its modulation cut and, if the run has cycles, its
    dithering-corrected asymmetries (the run's sensitivities)."""
    result = replace(result, patterns_modulation=m.patterns_modulation)
    if dithering is None:
        return result
    result = _dithered_result(result, m.regression.central(), acc, dithering, separating, blinder)
    return replace(result, dither_cycles=tuple(c for c in dithering.cycles if c.minirun == m.index))


def _run_dithering(
    result: RunResult,
    per_minirun: tuple[RunResult, ...],
    acc: RunAccumulator,
    dithering: Dithering | None,
    separating: float,
    blinder: Blinder,
) -> tuple[RunResult, tuple[RunResult, ...]]:
    """The run's dithering-corrected asymmetries (from its pooled regression sums), its
    sensitivities and cycles with their regression-minus-dithering slopes; the miniruns'
    results with those cycles."""
    result = replace(result, patterns_modulation=sum(m.patterns_modulation for m in acc.miniruns))
    if dithering is None:
        return result, per_minirun
    pooled = acc.miniruns[0].regression.central()
    for m in acc.miniruns[1:]:
        pooled = pooled.merge(m.regression.central())
    result = _dithered_result(result, pooled, acc, dithering, separating, blinder)
    cycles = tuple(_compared(c, per_minirun, acc) for c in dithering.cycles)
    per_minirun = tuple(
        replace(r, dither_cycles=tuple(c for c in cycles if c.minirun == i))
        for i, r in enumerate(per_minirun)
    )
    sensitivities = dithering.sensitivities()
    return replace(
        result,
        dither_sensitivities=sensitivities,
        dither_cycles=cycles,
        dither_difference=_slope_difference(sensitivities, result, acc),
    ), per_minirun


def _compared(
    cycle: DitherCycle, per_minirun: tuple[RunResult, ...], acc: RunAccumulator
) -> DitherCycle:
    """``cycle`` with regression minus dithering slopes, the regression of its minirun's."""
    if not 0 <= cycle.minirun < len(per_minirun):
        return cycle
    difference = _slope_difference(cycle.sensitivities, per_minirun[cycle.minirun], acc)
    return replace(cycle, regression_difference=difference)


def _slope_difference(
    sensitivities: dict[tuple[str, str], Measurement], regression: RunResult, acc: RunAccumulator
) -> dict[tuple[str, str], Measurement]:
    """Regression minus dithering slopes by (channel or :data:`COMBINED`, variable), errors
    in quadrature (the regression's patterns and the modulation windows are disjoint);
    none when the regression is not on every measured variable (it has other slopes)."""
    if regression.regressed_variables != acc.beamline.variables:
        return {}
    difference = {}
    for key, dit in sensitivities.items():
        reg = regression.slopes.get(key)
        if reg is not None:
            difference[key] = Measurement(
                reg.value - dit.value, math.hypot(reg.error, dit.error), reg.n
            )
    return difference


def _minirun_mean(measurements: list[Measurement | None], n: int) -> tuple[Measurement, float]:
    """Weighted mean of the miniruns' values (None: a minirun without one) and its chi2/ndf."""
    values = np.array([math.nan if m is None else m.value for m in measurements])
    errors = np.array([math.nan if m is None else m.error for m in measurements])
    value, error, chi2 = weighted_mean(values, errors)
    return Measurement(value, error, n), chi2


class _MergedSums:
    """The run-level statistics and sums, with the attribute names of :class:`MinirunSums`."""

    def __init__(self, acc: RunAccumulator) -> None:
        self.channel_asymmetry = acc.run_stats("channel_asymmetry")
        self.combined = acc.run_stats("combined")
        self.charge_asymmetry = acc.run_stats("charge_asymmetry")
        self.null_asymmetry = acc.run_stats("null_asymmetry")
        self.null_combined = acc.run_stats("null_combined")
        self.good_counts = sum(
            (m.good_counts for m in acc.miniruns), np.zeros((2, acc.n_channels), np.int64)
        )
        self.good_beam_monitor = sum((m.good_beam_monitor for m in acc.miniruns), np.zeros(2))
        self.good_windows = sum((m.good_windows for m in acc.miniruns), np.zeros(2, np.int64))
        self.good_analysing_power = sum((m.good_analysing_power for m in acc.miniruns), np.zeros(2))
        k = len(acc.null_names)
        self.good_null_counts = sum(
            (m.good_null_counts for m in acc.miniruns), np.zeros((k, 2, acc.n_channels), np.int64)
        )
        self.good_null_beam_monitor = sum(
            (m.good_null_beam_monitor for m in acc.miniruns), np.zeros((k, 2))
        )
        self.patterns_good = acc.good_patterns


def _result(
    sums: MinirunSums | _MergedSums,
    acc: RunAccumulator,
    separation: SpinSeparation,
    blinder: Blinder,
    estimator: str,
    pooled: dict[str, np.ndarray] | None = None,
) -> RunResult:
    """The result of ``sums``; with ``pooled`` (a minirun of an integrating run), errors from
    the run's pooled per-pattern spread (:func:`pooled_sd`)."""
    if estimator == COUNTING:
        measured, measured_channels = _counted(sums, acc)
    else:
        pooled = pooled or {}
        measured = Measurement(*_stats_measurement(sums.combined, 0, pooled.get("combined")))
        measured_channels = _stats_table(
            sums.channel_asymmetry, _channel_keys(acc), pooled.get("channel_asymmetry")
        )
    separating = separation.of(sums)
    combined = _physics(measured.value, measured.error, measured.n, separating)
    combined = Measurement(blinder.blind(combined.value), combined.error, combined.n)
    channels = _physics_channels(measured_channels, acc, separating, blinder)
    if estimator == COUNTING:
        null = _counted_nulls(sums, acc)
    else:
        null = {
            name: Measurement(*_stats_measurement(sums.null_combined, k))
            for k, name in enumerate(acc.null_names)
        }
    charge = Measurement(*_stats_measurement(sums.charge_asymmetry, 0))
    return RunResult(
        combined=combined,
        chi2_ndf=math.nan,
        channels=channels,
        charge_asymmetry=charge,
        patterns_good=sums.patterns_good,
        null=null,
        blinded=blinder.blinded,
        blinding_checksum=blinder.checksum,
        estimator=estimator,
    )
