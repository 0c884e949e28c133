"""Pattern asymmetries, accumulation and run results: unbiased pulls over seeded pseudo-runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.monitor.analysis.accumulator import MINUS, PLUS, RunAccumulator
from mupnc.monitor.analysis.asymmetry import (
    helicity_sums,
    pattern_charge_asymmetry,
    pattern_cross_ratio_asymmetry,
    pattern_yield_asymmetry,
)
from mupnc.monitor.analysis.results import RunResult, run_result
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.sim.source import SourceConfig, WindowSource


def pseudo_run(
    config: SourceConfig, n_windows: int, block: int = 500, minirun_patterns: int = 9000
) -> tuple[RunAccumulator, RunResult, int]:
    """Simulate, decode and accumulate one run; returns (accumulator, result, windows fed)."""
    source = WindowSource(config)
    decoder = HelicityDecoder(config.pattern, config.delay_patterns, source.n_channels)
    acc = RunAccumulator(source.channel_map, source.shape.size, minirun_patterns)
    fed = 0
    while fed < n_windows:
        size = min(block, n_windows - fed)
        acc.add(decoder.feed(source.next_block_of(size).block))
        fed += size
    acc.add(decoder.flush())
    return acc, run_result(acc, config.polarization), fed


# -- pattern-level formulas --------------------------------------------------------------


def test_helicity_sums_and_yield_asymmetry_by_hand() -> None:
    helicity = np.array([[1, -1, -1, 1]])
    counts = np.array([[[10.0, 1.0], [20.0, 1.0], [30.0, 3.0], [40.0, 3.0]]])
    bcm = np.array([[1.0, 2.0, 3.0, 4.0]])
    plus, minus = helicity_sums(counts, helicity)
    assert plus.tolist() == [[50.0, 4.0]] and minus.tolist() == [[50.0, 4.0]]
    # yields: 10, 10, 10, 10 and 1, 0.5, 1, 0.75 -> A = 0, (1.75 - 1.5) / 3.25
    a = pattern_yield_asymmetry(counts, bcm, helicity)
    np.testing.assert_allclose(a, [[0.0, 0.25 / 3.25]], rtol=1e-15)
    q = pattern_charge_asymmetry(bcm, helicity)
    np.testing.assert_allclose(q, [(5.0 - 5.0) / 10.0])


def test_cross_ratio_cancels_acceptance_and_luminosity() -> None:
    # F+ = eF L+ (1 - x), F- = eF L- (1 + x), B+ = eB L+ (1 + x), B- = eB L- (1 - x)
    x, e_f, e_b, l_plus, l_minus = 0.03, 1.1, 1.0, 1.02, 0.98
    helicity = np.array([[1, -1]])
    bcm = np.ones((1, 2))
    forward = np.array([[e_f * l_plus * (1 - x), e_f * l_minus * (1 + x)]])
    backward = np.array([[e_b * l_plus * (1 + x), e_b * l_minus * (1 - x)]])
    a = pattern_cross_ratio_asymmetry(forward, backward, bcm, helicity)
    np.testing.assert_allclose(a, [x], rtol=1e-12)


def test_sorted_counts_account_for_every_window() -> None:
    config = SourceConfig(muon_rate=2e7, seed=9, delay_patterns=2)
    acc, result, fed = pseudo_run(config, 4000, block=333, minirun_patterns=200)
    windows = sum(int(m.windows.sum()) + m.undecoded_windows for m in acc.miniruns)
    assert windows == fed
    assert sum(m.undecoded_windows for m in acc.miniruns) == 0
    sorted_counts = acc.sorted_counts()
    assert sorted_counts.shape == (2, 8)
    assert acc.good_patterns == fed // 4 == result.patterns_good
    assert [m.patterns_good for m in acc.miniruns] == [200] * 5
    # balanced patterns: as many +1 as -1 windows
    assert all(m.windows[PLUS] == m.windows[MINUS] for m in acc.miniruns)
    # five miniruns of equal size: the run result is their combination
    assert math.isfinite(result.chi2_ndf)
    assert set(result.channels) == {f"scat_{i}" for i in range(8)}


# -- statistical closure -----------------------------------------------------------------

N_RUNS = 200
A_TRUE = 1e-2


def test_alr_pulls_are_standard_normal() -> None:
    """Pulls ``(A_measured - A_true) / sigma`` of the combined physics A_LR over 200 runs.

    If the estimator is unbiased and its error correct, the pulls are (to a very good
    approximation: 500 patterns per run, so the t-distribution of an estimated error is
    normal to O(1/500)) independent N(0, 1) draws.  For N = 200 such draws:

    * the sample mean has standard deviation 1/sqrt(N), so it must lie within
      3/sqrt(200) = 0.21 of 0;
    * the sample standard deviation s (ddof=1) has, for normal data, Var(s) ~ 1/(2(N-1)),
      so s must lie within 3/sqrt(2 * 199) = 0.15 of 1.

    Both are 3-sigma bands on statistics of a fixed set of seeds, so the test is
    deterministic.  With sigma ~ 1.8e-3 per run, A_true / sigma ~ 5.5: a missing 1/P
    (P = 0.9) would shift the mean pull by ~ -0.6, far outside the band; the size of the
    error itself is checked against counting statistics below.
    """
    pulls, raw = [], []
    for seed in range(N_RUNS):
        config = SourceConfig(
            asymmetry=A_TRUE,
            polarization=0.9,
            muon_rate=2.4e7,  # ~25 counts per window and channel: quick and still Gaussian
            pattern="quartet",
            delay_patterns=2,
            seed=1000 + seed,
            helicity_seed=(0x2AAAAAAA + 7919 * seed) & 0x3FFFFFFF or 1,
        )
        _, result, _ = pseudo_run(config, 2000)
        assert result.patterns_good == 500
        pulls.append((result.combined.value - A_TRUE) / result.combined.error)
        raw.append(result.combined.error)
    pulls = np.array(pulls)
    assert np.isfinite(pulls).all()
    assert abs(pulls.mean()) < 3 / math.sqrt(N_RUNS), pulls.mean()
    assert abs(pulls.std(ddof=1) - 1) < 3 / math.sqrt(2 * (N_RUNS - 1)), pulls.std(ddof=1)
    # the expected error: counting statistics of 2000 windows x 8 channels x 25 counts,
    # divided by P (sigma_A = 1/sqrt(N_counts) for a counting asymmetry)
    counts = 2.4e7 / 240 * 2.5e-4 * 2000 * 8
    expected = 1 / math.sqrt(counts) / 0.9
    assert abs(np.mean(raw) / expected - 1) < 0.05


@pytest.mark.parametrize("asymmetry", [2e-2, -2e-2])
def test_afb_cross_ratio_cancels_acceptance_mismatch(asymmetry: float) -> None:
    """A_FB with forward acceptance 1.1 x backward recovers the injected asymmetry.

    One run of 40000 windows (10000 quartets, ~400 gammas per window and detector): the
    expected error of the physics A_FB is about 1/sqrt(2 * 40000 * 400) / P = headroom
    for a 3-sigma test of a 2 % asymmetry.
    """
    cmap = ChannelMap(
        mode="afb",
        channels=(
            Channel("gamma_fwd", "forward", 1.1e-3),
            Channel("gamma_bwd", "backward", 1.0e-3),
        ),
    )
    config = SourceConfig(
        mode="afb",
        asymmetry=asymmetry,
        polarization=0.8,
        channel_map=cmap,
        charge_asymmetry=3e-3,  # a luminosity difference between spin states cancels too
        seed=77,
    )
    _, result, fed = pseudo_run(config, 40_000, block=1000)
    assert result.patterns_good == fed // 4
    combined = result.combined
    assert combined.n == fed // 4
    expected_error = 1 / math.sqrt(fed * 2.1e-3 * 1e8 / 240) / 0.8
    assert 0.8 < combined.error / expected_error < 1.2
    assert abs(combined.value - asymmetry) < 3 * combined.error, (combined, asymmetry)
    # the forward and backward detectors see opposite asymmetries of size P * A
    fwd, bwd = result.channels["gamma_fwd"], result.channels["gamma_bwd"]
    assert abs(fwd.value + asymmetry) < 3 * fwd.error
    assert abs(bwd.value - asymmetry) < 3 * bwd.error
    # the beam charge asymmetry is measured, not divided by P
    charge = result.charge_asymmetry
    assert abs(charge.value - 3e-3) < 3 * charge.error
