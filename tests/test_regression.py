"""The regression core (pure): merge, chunk invariance, slopes, pulls, ill-conditioning."""

import json
import math

import numpy as np
import pytest

from mupnc.monitor.analysis.regression import CentralMoments, CrossMoments, regress


def _patterns(rng, p, slopes, hc, *, asymmetry=1e-3, jitter=(0.05, 0.02, 0.03), noise=1e-3, w=2.0):
    """``p`` patterns with beam differences dX (jitter per variable, mean ``hc``) and
    targets whose ``u = w (A + slopes^T dX) + noise``; slopes ``(v, m)``."""
    v, m = slopes.shape
    dx = hc + np.asarray(jitter)[:v] * rng.standard_normal((p, v))
    u = w * (asymmetry + dx @ slopes) + noise * w * rng.standard_normal((p, m))
    weight = np.full((p, m), w) * (1 + 1e-3 * rng.standard_normal((p, m)))
    return dx, u, weight


def _one_pass(dx, u, w) -> CrossMoments:
    moments = CrossMoments.empty(dx.shape[1], u.shape[1])
    moments.add(dx, u, w, np.ones(dx.shape[0]))
    return moments


def test_merge_of_two_accumulators_equals_one_pass_over_both():
    rng = np.random.default_rng(1)
    slopes = np.array([[2e-3, -1e-3, 0.0], [5e-4, 0.0, 3e-3]])
    a = _patterns(rng, 300, slopes, hc=np.array([0.01, -0.02]))
    b = _patterns(rng, 700, slopes, hc=np.array([0.5, 0.3]))  # different means: d != 0
    both = [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]
    merged = _one_pass(*a).central().merge(_one_pass(*b).central())
    single = _one_pass(*both).central()
    assert merged.n == single.n == 1000
    for name in ("mean_x", "mean_u", "mean_w", "c_xx", "c_xu", "c_uu"):
        np.testing.assert_allclose(getattr(merged, name), getattr(single, name), rtol=1e-11)
    # the merge with the sign of d reversed (JAPAN's bug) would differ
    d = single.mean_x - _one_pass(*a).central().mean_x
    assert np.abs(d).max() > 0.1


def test_merge_with_an_empty_side_is_the_other_side():
    rng = np.random.default_rng(2)
    a = _one_pass(*_patterns(rng, 50, np.ones((1, 1)) * 1e-3, hc=np.zeros(1))).central()
    empty = CentralMoments.empty(1, 1)
    assert empty.merge(a) is a and a.merge(empty) is a


def test_sums_do_not_depend_on_how_the_stream_is_cut():
    rng = np.random.default_rng(3)
    dx, u, w = _patterns(rng, 1000, np.full((3, 4), 1e-3), hc=np.full(3, 0.1))
    u[17, 2] = np.nan  # a pattern that cannot be used
    whole = _one_pass(dx, u, w)
    for cuts in ([1, 63, 64, 65, 500], [999], list(range(0, 1000, 7))):
        pieces = CrossMoments.empty(3, 4)
        for a, b in zip([0, *cuts], [*cuts, 1000], strict=True):
            pieces.add(dx[a:b], u[a:b], w[a:b], np.ones(b - a))
        assert pieces == whole
    assert whole.n == 999 and whole.rows == 1000


def test_state_round_trips_bit_exactly():
    rng = np.random.default_rng(4)
    moments = _one_pass(*_patterns(rng, 100, np.full((2, 3), 1e-3), hc=np.zeros(2)))
    assert CrossMoments.from_state(json.loads(json.dumps(moments.state()))) == moments
    with pytest.raises(ValueError, match="disagree in shape"):
        CrossMoments.from_state({**moments.state(), "targets": 4})


def test_injected_sensitivities_are_recovered_within_three_sigma():
    rng = np.random.default_rng(5)
    slopes = np.array([[3e-3, -2e-3, 0.0, 1e-3], [0.0, 1e-3, -4e-3, 2e-3]])
    result = regress(_one_pass(*_patterns(rng, 20000, slopes, hc=np.array([0.01, 0.0]))).central())
    pulls = (result.slopes - slopes) / result.slope_errors
    assert np.abs(pulls).max() < 3.0
    assert result.ill_conditioned == ""


def test_regressed_asymmetry_is_unbiased_where_the_raw_one_is_off_by_ten_sigma():
    """1000 pseudo-runs of 400 patterns with a helicity-correlated position difference."""
    rng = np.random.default_rng(6)
    slopes = np.array([[5e-3], [1e-3]])
    hc = np.array([0.035, 0.005])  # raw bias 1.8e-4: 11 sigma of one pseudo-run (1.6e-5)
    raw_pulls, pulls = [], []
    for _ in range(1000):
        result = regress(_one_pass(*_patterns(rng, 400, slopes, hc, noise=2e-4)).central())
        raw_pulls.append((result.raw[0] - 1e-3) / result.raw_error[0])
        pulls.append((result.asymmetry[0] - 1e-3) / result.error[0])
    assert np.mean(raw_pulls) > 10
    assert abs(np.mean(pulls)) < 0.1
    assert abs(np.std(pulls) - 1) < 0.1


def test_without_beam_correlation_regressed_and_raw_agree():
    """No sensitivity: the regression moves the value by a small fraction of its error and
    the error grows by no more than the degrees of freedom lost (1000 pseudo-runs)."""
    rng = np.random.default_rng(7)
    slopes = np.zeros((2, 1))
    shifts, ratios = [], []
    for _ in range(1000):
        result = regress(_one_pass(*_patterns(rng, 200, slopes, hc=np.zeros(2))).central())
        shifts.append((result.asymmetry[0] - result.raw[0]) / result.raw_error[0])
        ratios.append(result.error[0] / result.raw_error[0])
    assert np.std(shifts) < 0.2  # two variables over 200 patterns: ~ sqrt(2/200) = 0.1
    dof_loss = math.sqrt(199 / (200 - 2 - 1))
    assert np.median(ratios) <= dof_loss * 1.01


def test_degenerate_beam_differences_are_refused_not_fitted():
    rng = np.random.default_rng(8)
    dx, u, w = _patterns(rng, 500, np.full((2, 2), 1e-3), hc=np.zeros(2))
    dx[:, 1] = 2 * dx[:, 0] + 1e-9 * rng.standard_normal(500)  # one monitor read twice
    result = regress(_one_pass(dx, u, w).central())
    assert "nearly degenerate" in result.ill_conditioned
    assert np.isnan(result.asymmetry).all() and np.isnan(result.slopes).all()
    assert np.isfinite(result.raw).all()


def test_too_few_patterns_leave_the_regression_undefined():
    rng = np.random.default_rng(9)
    result = regress(_one_pass(*_patterns(rng, 3, np.full((2, 1), 1e-3), hc=np.zeros(2))).central())
    assert "3 patterns for 2 variables" in result.ill_conditioned
    assert np.isnan(result.asymmetry).all()


def test_selecting_no_variables_leaves_the_raw_value():
    rng = np.random.default_rng(10)
    moments = _one_pass(*_patterns(rng, 100, np.full((2, 1), 1e-3), hc=np.zeros(2))).central()
    result = regress(moments.select([]))
    assert result.asymmetry[0] == result.raw[0] and result.error[0] == result.raw_error[0]


def test_the_monitors_resolution_is_taken_out_of_the_slopes():
    """Errors in variables: beam differences measured with a noise of 40 % of their spread
    attenuate least-squares slopes by 1/(1 + 0.16) = 14 %; told the noise covariance, the
    regression recovers them (1000 pseudo-runs: slope pulls N(0, 1))."""
    rng = np.random.default_rng(11)
    slope, spread, noise = 5e-3, 0.05, 0.02
    plain, corrected = [], []
    for _ in range(1000):
        true_dx = spread * rng.standard_normal((2000, 1))
        u = 2.0 * (1e-3 + slope * true_dx) + 2e-5 * rng.standard_normal((2000, 1))
        measured = true_dx + noise * rng.standard_normal((2000, 1))
        moments = _one_pass(measured, u, np.full((2000, 1), 2.0)).central()
        fit = regress(moments)
        plain.append((fit.slopes[0, 0] - slope) / fit.slope_errors[0, 0])
        fit = regress(moments, np.array([[noise**2]]))
        corrected.append((fit.slopes[0, 0] - slope) / fit.slope_errors[0, 0])
    assert np.mean(plain) < -10
    assert abs(np.mean(corrected)) < 0.1 and abs(np.std(corrected) - 1) < 0.1


def test_regressed_asymmetry_keeps_its_pulls_at_the_muonic_atom_rate():
    """The weakest place: 0.0075 counts per window (the talk's A_FB rate), quartets, most
    patterns without a count. 1000 pseudo-runs of 40000 patterns (~1200 counts each), a
    beam jittering 20 um per window and steered 20 um by the spin, 10 %/mm sensitivity:
    the regressed u/w̄ stays unbiased with a right error (pulls N(0, 1) within 3 sigma)."""
    rng = np.random.default_rng(12)
    mu, asymmetry, slope, patterns = 0.0075, 0.05, 0.1, 40000
    helicity = np.array([1, -1, -1, 1])
    pulls = []
    for _ in range(1000):
        x = 0.02 * helicity + 0.02 * rng.standard_normal((patterns, 4))  # mm, per window
        counts = rng.poisson(mu * (1 + asymmetry * helicity + slope * x))
        plus, minus = counts[:, [0, 3]].sum(axis=1), counts[:, [1, 2]].sum(axis=1)
        u = ((plus - minus) / 4.0)[:, None]
        w = ((plus + minus) / 4.0)[:, None]
        dx = ((x * helicity).sum(axis=1) / 4.0)[:, None]
        moments = CrossMoments.empty(1, 1)
        moments.add(dx, u, w, np.full(patterns, 0.25))
        fit = regress(moments.central())
        pulls.append((fit.asymmetry[0] - asymmetry) / fit.error[0])
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 3 / np.sqrt(pulls.size)
    assert abs(pulls.std() - 1) < 3 / np.sqrt(2 * pulls.size)


def test_a_result_made_every_second_equals_one_made_once_at_the_end():
    """The monitor makes the run's result every second and reuses the regression fit of
    every minirun whose sums did not change since; the result is the same, to the bit, as
    one made once from the same windows (6 miniruns regressed on the beam monitors of the
    shipped map, a steered beam, the last minirun open)."""
    from support.simulated import settings_of

    from mupnc.monitor.analysis.run_analysis import RunAnalysis
    from mupnc.sim.beamline import BeamlineConfig
    from mupnc.sim.source import SourceConfig, WindowSource

    beam = BeamlineConfig({"x": {"hc_difference": 0.03}}, {"default": {"x": 0.1}})
    config = SourceConfig(muon_rate=1e9, seed=21, beamline=beam)
    every_second = RunAnalysis(settings_of(config), minirun_patterns=50)
    once = RunAnalysis(settings_of(config), minirun_patterns=50)
    source = WindowSource(config)
    for _ in range(5):
        block = source.next_block_of(240).block
        every_second.feed(block)
        every_second.result()
        once.feed(block)
    result = every_second.result()
    assert len(result.miniruns) >= 6 and result.miniruns[0].slopes
    assert repr(result) == repr(once.result())
