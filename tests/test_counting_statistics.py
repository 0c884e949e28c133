"""The right asymmetry where counts are few, and the right combined error where the beam
monitor is noisy: seeded pseudo-run studies of both estimators (pure, no network).

Bands are 3 sigma of the statistic they bound (mean: 3/sqrt(N), width: 3/sqrt(2(N-1)));
N = 4000 pseudo-runs make both 3-sigma bands tighter than the 0.05 asked for.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.asymmetry import counted_cross_ratio_asymmetry
from mupnc.monitor.analysis.results import (
    COUNTING,
    COUNTING_LIMIT,
    INTEGRATING,
    choose_estimator,
    run_result,
)
from mupnc.monitor.decoding.stream import DecodedWindows

P = 0.9
QUARTET = np.array([1, -1, -1, 1])
MUONS = 4.0e5
"""Beam-monitor integral of a window (muons): 1e8 muons/s at 240 Hz."""


def assert_standard_normal(pulls: np.ndarray) -> None:
    n = pulls.size
    assert np.isfinite(pulls).all()
    assert abs(pulls.mean()) < min(0.05, 3 / math.sqrt(n)), pulls.mean()
    assert abs(pulls.std(ddof=1) - 1) < min(0.05, 3 / math.sqrt(2 * (n - 1))), pulls.std(ddof=1)


def quartets(rng: np.random.Generator, patterns: int) -> np.ndarray:
    """Helicity of each window: pseudo-random pattern polarity times the quartet shape."""
    polarity = rng.choice([-1, 1], size=patterns)
    return (polarity[:, None] * QUARTET[None, :]).ravel().astype(np.int8)


def decoded(helicity: np.ndarray, counts: np.ndarray, beam_monitor: np.ndarray) -> DecodedWindows:
    n = helicity.size
    return DecodedWindows(
        seq=np.arange(n, dtype=np.int64),
        pattern_number=np.arange(n, dtype=np.int64) // QUARTET.size,
        helicity=helicity,
        good=np.ones(n, dtype=bool),
        beam_monitor=beam_monitor,
        counts=counts,
    )


# -- A_FB: the cross ratio of summed counts, 0.0075 to 100 counts per detector per window


@pytest.mark.parametrize("per_window", [0.0075, 0.3, 1.0, 3.0, 100.0])
def test_counted_cross_ratio_pulls_at_the_talks_rates(per_window: float) -> None:
    """4000 pseudo-runs of a forward and a backward detector with ``per_window`` mean
    counts, A_FB = 0.1 at P = 0.9, 30 % more acceptance forward and a 1e-3 beam charge
    asymmetry (both cancel): a run's counts per spin state are Poisson sums over its
    windows, so each pseudo-run draws the four sums.  The run holds 4000 counts per
    detector whatever the rate (at 0.0075 counts per window, 5.3e5 windows: 37 min at
    240 Hz)."""
    rng = np.random.default_rng(17)
    runs, a_fb, charge = 4000, 0.1, 1e-3
    windows = 4000 / per_window
    beam = {+1: 1 + charge, -1: 1 - charge}
    # helicity +1: forward sees theta < pi/2 from the spin, i.e. fewer gammas (A_FB > 0)
    mean_f = {h: windows / 2 * per_window * 1.3 * beam[h] * (1 - h * P * a_fb) for h in (1, -1)}
    mean_b = {h: windows / 2 * per_window * beam[h] * (1 + h * P * a_fb) for h in (1, -1)}
    sums = [rng.poisson(m, runs) for m in (mean_f[1], mean_f[-1], mean_b[1], mean_b[-1])]
    measured = np.array([counted_cross_ratio_asymmetry(*run) for run in zip(*sums, strict=True)])
    assert_standard_normal((measured[:, 0] - P * a_fb) / measured[:, 1])


def test_a_cross_ratio_without_counts_in_a_spin_state_is_undefined() -> None:
    """(F+, F-, B+, B-) = (2, 0, 0, 2) and its mirror are both undefined (the per-pattern
    mean gave -1 for one and dropped the other)."""
    for counts in ((2, 0, 0, 2), (0, 2, 2, 0), (0, 0, 0, 0)):
        value, error = counted_cross_ratio_asymmetry(*counts)
        assert math.isnan(value) and math.isnan(error)


def afb_map() -> ChannelMap:
    return ChannelMap(
        mode="afb",
        channels=(
            Channel("fwd", "forward", 1.0, None),
            Channel("bwd", "backward", 1.0, None),
        ),
    )


def test_the_accumulator_takes_the_counting_estimator_at_the_muonic_atom_rate() -> None:
    """One A_FB run at 0.0075 counts per detector per window (the talk's 3.6 gammas/s at
    240 Hz), 400k windows: the run value is within 3 sigma of P * A_FB with a real error;
    the per-pattern mean of the same run would be nonsense (most patterns have no count)."""
    rng = np.random.default_rng(5)
    patterns, a_fb = 100_000, 0.1
    helicity = quartets(rng, patterns)
    mean = 0.0075 * np.column_stack([1 - helicity * P * a_fb, 1 + helicity * P * a_fb])
    acc = RunAccumulator(afb_map(), QUARTET.size, minirun_patterns=9000)
    acc.add(decoded(helicity, rng.poisson(mean), np.full(helicity.size, MUONS)))
    assert choose_estimator(acc) == COUNTING
    result = run_result(acc, P)
    assert result.estimator == COUNTING
    assert 0 < result.combined.error < 0.05
    assert abs(result.combined.value - a_fb) < 3 * result.combined.error
    assert all(math.isfinite(m.combined.value) for m in result.miniruns)
    for null in result.null.values():  # counted too: defined, and compatible with 0
        assert 0 < null.error < 0.05 and abs(null.value) < 3 * null.error


def test_counted_null_asymmetries_are_unbiased_where_counts_are_few() -> None:
    """1000 A_FB pseudo-runs at 0.3 counts per detector per window (2000 quartets, A_FB =
    0.1): the counting estimator's null asymmetries (counts summed by the null's window
    signs) are N(0, 1) pulls about 0, whatever the helicity asymmetry; per pattern they
    were undefined in most patterns."""
    rng = np.random.default_rng(23)
    runs, patterns, a_fb = 1000, 2000, 0.1
    pulls: dict[str, list[float]] = {"null_half": [], "null_even_odd": []}
    beam_monitor = np.full(patterns * QUARTET.size, MUONS)
    for _ in range(runs):
        helicity = quartets(rng, patterns)
        mean = 0.3 * np.column_stack([1 - helicity * P * a_fb, 1 + helicity * P * a_fb])
        acc = RunAccumulator(afb_map(), QUARTET.size, minirun_patterns=patterns)
        acc.add(decoded(helicity, rng.poisson(mean), beam_monitor))
        result = run_result(acc, P)
        assert result.estimator == COUNTING
        for name, values in pulls.items():
            values.append(result.null[name].value / result.null[name].error)
    for values in pulls.values():
        pull = np.array(values)
        n = pull.size  # 1000 runs: 3-sigma bands 0.095 (mean) and 0.067 (width)
        assert abs(pull.mean()) < 3 / math.sqrt(n), pull.mean()
        assert abs(pull.std(ddof=1) - 1) < 3 / math.sqrt(2 * (n - 1)), pull.std(ddof=1)


# -- A_LR: counting at 0.05 counts per window, integrating at 1e5 with a noisy beam monitor


def scatter_map(n: int) -> ChannelMap:
    return ChannelMap(
        mode="alr", channels=tuple(Channel(f"c{i}", "scatter", 1.0, 0.0) for i in range(n))
    )


def test_counted_yield_asymmetry_pulls_at_005_counts_per_window() -> None:
    """4000 independent channels (each one pseudo-run of the per-channel estimator) with
    0.05 counts per window over 5000 windows (250 counts), A_LR = 0.05: counting, pulls
    N(0, 1)."""
    rng = np.random.default_rng(11)
    channels, patterns, a = 4000, 1250, 0.05
    helicity = quartets(rng, patterns)
    mean = 0.05 * (1 + helicity[:, None] * P * a) * np.ones((1, channels))
    acc = RunAccumulator(scatter_map(channels), QUARTET.size, minirun_patterns=1000)
    acc.add(decoded(helicity, rng.poisson(mean), np.full(helicity.size, MUONS)))
    result = run_result(acc, P)
    assert result.estimator == COUNTING
    values = np.array([m.value for m in result.channels.values()])
    errors = np.array([m.error for m in result.channels.values()])
    assert_standard_normal((values - a) / errors)


def noisy_beam_run(rng: np.random.Generator, patterns: int, resolution: float, a: float):
    """8 scatter channels at 1e5 counts per window; the beam monitor reads the true beam
    with a relative ``resolution`` per window, common to all channels once normalised."""
    helicity = quartets(rng, patterns)
    beam = MUONS * (1 + 0.02 * rng.standard_normal(helicity.size))  # intensity jitter
    mean = 1e5 * (beam / MUONS)[:, None] * (1 + helicity[:, None] * P * a) * np.ones((1, 8))
    counts = rng.poisson(mean)
    monitor = beam * (1 + resolution * rng.standard_normal(helicity.size))
    return decoded(helicity, counts, monitor)


def test_combined_a_lr_error_holds_with_a_noisy_beam_monitor() -> None:
    """2000 pseudo-runs of 8 channels sharing a beam monitor of 1e-2 resolution (the
    channels' yields are correlated through it): the combined asymmetry, formed per
    pattern, has pulls N(0, 1) (the inverse-variance mean of the channels gave width 2.6)."""
    rng = np.random.default_rng(23)
    runs, a = 2000, 1e-3
    pulls = np.empty(runs)
    for i in range(runs):
        acc = RunAccumulator(scatter_map(8), QUARTET.size, minirun_patterns=100)
        acc.add(noisy_beam_run(rng, 200, 1e-2, a))
        result = run_result(acc, P)
        assert result.estimator == INTEGRATING
        pulls[i] = (result.combined.value - a) / result.combined.error
    assert_standard_normal(pulls)


def test_the_estimator_follows_the_counts_per_window() -> None:
    rng = np.random.default_rng(3)
    for per_window, expected in (
        (0.5 * COUNTING_LIMIT, COUNTING),
        (2 * COUNTING_LIMIT, INTEGRATING),
    ):
        helicity = quartets(rng, 100)
        acc = RunAccumulator(scatter_map(2), QUARTET.size, minirun_patterns=50)
        counts = rng.poisson(per_window * np.ones((helicity.size, 2)))
        acc.add(decoded(helicity, counts, np.full(helicity.size, MUONS)))
        assert choose_estimator(acc) == expected


def test_nothing_analysed_is_undefined_not_zero() -> None:
    acc = RunAccumulator(scatter_map(2), QUARTET.size, minirun_patterns=50)
    result = run_result(acc, P)
    assert math.isnan(result.combined.value) and math.isnan(result.combined.error)
    assert all(math.isnan(m.value) for m in result.channels.values())
    assert math.isnan(result.chi2_ndf)
