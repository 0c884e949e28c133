"""Beam modulation ("dithering"): the pure sums and fits on windows built here with known
responses and sensitivities, then through the simulator, the decoder and the accumulator
(no CA): the modulation cut, the sensitivities against the simulated ones and the
regression's, a stuck coil, chunk invariance and a restart."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from support.simulated import settings_of

from mupnc.daq.blocks import FLAG_MODULATION
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.modulation import (
    COMBINED,
    CROSS_RATIO,
    CycleMoments,
    Layout,
    ModulationSums,
    dither,
    dithered,
    fit_cycle,
    merge_cycles,
)
from mupnc.monitor.analysis.results import run_result
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.stream import DecodedWindows
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.modulation import ModulationConfig
from mupnc.sim.source import SourceConfig, WindowSource

VARIABLES = ("x", "y", "xp", "yp", "dpp")
H_TRUE = np.array(  # (coils, variables) per mA: each coil mostly moves one variable
    [
        [1e-3, 0.0, 2e-5, 0.0, 0.0],
        [0.0, 1e-3, 0.0, 2e-5, 0.0],
        [2e-4, 0.0, 2e-4, 0.0, 0.0],
        [0.0, 2e-4, 0.0, 2e-4, 0.0],
        [1e-4, 0.0, 0.0, 0.0, 1e-6],
    ]
)
K_TRUE = np.array(  # (variables, targets): fraction per unit
    [
        [0.1, -0.05, 0.02],
        [-0.05, 0.08, 0.0],
        [0.01, 0.0, 0.03],
        [0.0, 0.02, -0.01],
        [5.0, -3.0, 2.0],
    ]
)
JITTER = np.array([0.02, 0.02, 0.005, 0.005, 1e-5])  # per window at the target
RESOLUTION = np.array([1.4e-3, 1.4e-3, 4.7e-4, 4.7e-4, 5e-7])  # the shipped monitors'
LAYOUT = Layout(("c1", "c2", "c3", "c4", "c5"), VARIABLES, ("a", "b"), ("scatter",))


def _cycle(rng, cycle, h=H_TRUE, k=K_TRUE, windows=200, noise=3e-3, y0=50.0, beam_noise=1.0):
    """One cycle's windows: each coil in turn driven by a 100 mA sine (uA words), the beam
    moved by ``h`` plus jitter, measured with the monitors' resolution (both times
    ``beam_noise``), yields following the true beam with sensitivities ``k`` and a relative
    ``noise``."""
    coils, targets = h.shape[0], k.shape[1]
    parts = []
    for c in range(coils):
        t = np.arange(windows)
        current = np.zeros((windows, coils))
        current[:, c] = np.rint(1e5 * np.sin(2 * np.pi * (t + 0.5) / 48)) * 1e-3
        true = beam_noise * JITTER * rng.standard_normal((windows, len(VARIABLES)))
        true += current[:, c, None] * h[c]
        measured = true + beam_noise * RESOLUTION * rng.standard_normal(true.shape)
        yields = y0 * (1 + true @ k) * (1 + noise * rng.standard_normal((windows, targets)))
        parts.append((np.full(windows, cycle), current, measured, yields))
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True))


def _stream(rng, cycles, **options):
    return tuple(
        np.concatenate(a)
        for a in zip(*(_cycle(rng, c, **options) for c in range(cycles)), strict=True)
    )


def _sums(windows, coils=5, variables=5, targets=3) -> ModulationSums:
    sums = ModulationSums.empty(coils, variables, targets)
    sums.add(*windows)
    return sums


# -- the sums --------------------------------------------------------------------------------


def test_sums_do_not_depend_on_how_the_windows_are_cut():
    windows = _stream(np.random.default_rng(1), 3)
    n = windows[0].size
    whole = _sums(windows)
    for cuts in ([1, 63, 64, 65, 1000, 1001, 2500], [n - 1], list(range(0, n, 37))):
        pieces = ModulationSums.empty(5, 5, 3)
        for a, b in zip([0, *cuts], [*cuts, n], strict=True):
            pieces.add(*(x[a:b] for x in windows))
        assert pieces == whole
    assert whole.windows == n and len(whole.cells) == 15


def test_merge_of_two_parts_equals_one_pass():
    """A stream cut inside a cycle's coil: the parts' moments merged equal one pass's."""
    windows = _stream(np.random.default_rng(2), 3)
    cut = 1000 + 300  # cycle 1, coil 1
    first = _sums(tuple(x[:cut] for x in windows)).moments()
    second = _sums(tuple(x[cut:] for x in windows)).moments()
    merged, single = merge_cycles(first, second), _sums(windows).moments()
    assert list(merged) == list(single) == [0, 1, 2]
    for cycle in single:
        for name in CycleMoments.__dataclass_fields__:
            np.testing.assert_allclose(
                getattr(merged[cycle], name), getattr(single[cycle], name), rtol=1e-10, atol=1e-18
            )


def test_state_round_trips_bit_exactly():
    windows = _stream(np.random.default_rng(3), 2)
    sums = _sums(tuple(x[:777] for x in windows))  # groups still open
    restored = ModulationSums.from_state(json.loads(json.dumps(sums.state())))
    assert restored == sums
    for s in (sums, restored):
        s.add(*(x[777:] for x in windows))
    assert restored == sums == _sums(windows)
    state = sums.state()
    state["cells"][0]["sums"] = state["cells"][0]["sums"][:-1]
    with pytest.raises(ValueError, match="disagrees in shape"):
        ModulationSums.from_state(state)


def test_windows_without_exactly_one_driven_coil_enter_no_cell():
    cycle, current, beam, yields = _cycle(np.random.default_rng(4), 0, windows=50)
    current[:10] = 0.0  # nothing driven
    current[10:20, 3] = 5.0  # two coils driven (coil 0 and 3)
    yields[20, 1] = np.inf  # no beam monitor
    sums = _sums((cycle, current, beam, yields))
    assert sums.windows == 250
    assert sums.cells[(0, 0)].n == 50 - 21
    assert sorted(sums.cells) == [(0, c) for c in range(5)]


# -- one cycle and the run -------------------------------------------------------------------


PSEUDO_CYCLES = 200
PULL_MEAN_BAND, PULL_WIDTH_BAND = 3 / math.sqrt(PSEUDO_CYCLES), 3 / math.sqrt(2 * PSEUDO_CYCLES)
"""3 sigma of a pull mean and width over the pseudo-cycles; each element on its own gets
4 sigma (about 50 elements tested per quantity)."""


def _pull_bands(pulls: np.ndarray) -> None:
    """Pulls ``(cycles, ...)``: every element's mean and width within 4 sigma of their
    statistical bands, all of them pooled within 3 sigma (pooled elements of one cycle are
    correlated, so the bands of one element's are conservative)."""
    flat = pulls.reshape(pulls.shape[0], -1)
    assert np.isfinite(flat).all()
    assert np.abs(flat.mean(axis=0)).max() < 4 / 3 * PULL_MEAN_BAND
    assert np.abs(flat.std(axis=0) - 1).max() < 4 / 3 * PULL_WIDTH_BAND
    assert abs(flat.mean()) < PULL_MEAN_BAND
    assert abs(flat.std() - 1) < PULL_WIDTH_BAND


@pytest.mark.parametrize("noise", [3e-3, 1e-4])
def test_responses_and_sensitivities_are_unbiased_with_right_errors(noise):
    """200 pseudo-cycles: H, D and beta within their errors of the truth (pulls N(0, 1)).
    At low detector noise the beam jitter dominates the yields' residuals; it moves H and D
    together and cancels in beta, which only the residuals' X-Y covariance gets right."""
    rng = np.random.default_rng(5)
    d_true = H_TRUE @ K_TRUE
    pulls = {"h": [], "d": [], "beta": []}
    for cycle in range(PSEUDO_CYCLES):
        moments = _sums(_cycle(rng, cycle, noise=noise)).moments()[cycle]
        fit = fit_cycle(cycle, moments, LAYOUT)
        assert fit.skipped == "" and fit.dead == ()
        pulls["h"].append((fit.h - H_TRUE) / fit.h_error)
        pulls["d"].append((fit.d - d_true) / fit.d_error)
        pulls["beta"].append((fit.beta - K_TRUE) / fit.beta_error)
    for values in pulls.values():
        _pull_bands(np.array(values))


def test_the_run_average_is_the_cycles_mean_weighted_by_their_rows():
    """Twenty equal cycles: the run's sensitivities are their plain mean (weights from the
    schedule, not from each cycle's estimated errors), the covariance their mean over 20."""
    rng = np.random.default_rng(6)
    cycles = _sums(_stream(rng, 20)).moments()
    run = dither(cycles, LAYOUT, {c: c // 5 for c in cycles})
    assert run.skipped == "" and run.used == 20 and len(run.cycles) == 20
    assert [c.minirun for c in run.cycles] == [c // 5 for c in range(20)]
    np.testing.assert_allclose(run.beta, np.mean([f.beta for f in run.fits], axis=0))
    np.testing.assert_allclose(
        run.covariance, np.mean([f.beta_covariance for f in run.fits], axis=0) / 20
    )
    error = np.sqrt(np.diagonal(run.covariance, axis1=1, axis2=2)).T
    assert np.abs((run.beta - K_TRUE) / error).max() < 4
    single = np.mean([f.beta_error for f in run.fits], axis=0)
    np.testing.assert_allclose(error, single / np.sqrt(20), rtol=0.2)
    named = run.sensitivities()
    assert named[("a", "x")].value == run.beta[0, 0]
    assert named[(COMBINED, "y")].value == run.beta[1, 2]  # the scatter sum's


def test_a_dead_coil_is_found_and_the_others_still_solve():
    """A stuck coil (its current shows, the beam does not move): named dead; with six coils
    the other five still determine beta, with five it is refused naming the coil."""
    rng = np.random.default_rng(7)
    stuck = H_TRUE.copy()
    stuck[2] = 0.0
    layout = replace(LAYOUT, coils=(*LAYOUT.coils, "c6"))
    six = np.vstack([stuck, [1e-4, 0.0, 3e-4, 0.0, 0.0]])  # c6 does c3's job
    fit = fit_cycle(0, _sums(_cycle(rng, 0, h=six), coils=6).moments()[0], layout)
    assert fit.dead == (2,) and fit.skipped == ""
    assert np.abs((fit.beta - K_TRUE) / fit.beta_error).max() < 4
    five = fit_cycle(0, _sums(_cycle(rng, 0, h=stuck)).moments()[0], LAYOUT)
    assert five.dead == (2,) and np.isnan(five.beta).all()
    assert "dead coil c3" in five.skipped and "4 live coils for 5 variables" in five.skipped
    run = dither({0: _sums(_cycle(rng, 0, h=stuck)).moments()[0]}, LAYOUT)
    assert run.dead_coils == ("c3",) and "none of 1 modulation cycles usable" in run.skipped
    assert run.cycles[0].dead_coils == ("c3",)


def test_an_ill_conditioned_h_is_refused():
    """Two coils pushing the beam the same way: with the beam's noise, H's weakest direction
    is noise; nearly without noise, the determinant of its columns' correlation is ~0.
    Either way: refused, beta NaN, a reason."""
    rng = np.random.default_rng(8)
    h = H_TRUE.copy()
    h[2] = h[0] * 0.5  # c3 moves the beam as c1 does, half as much
    fit = fit_cycle(0, _sums(_cycle(rng, 0, h=h)).moments()[0], LAYOUT)
    assert fit.skipped.startswith("H ill-conditioned (its weakest direction")
    assert fit.condition > 1e-10 and fit.dead == ()
    assert np.isnan(fit.beta).all() and np.isnan(fit.beta_covariance).all()
    h[2] += np.array([0.0, 0.0, 2e-11, 0.0, 0.0])
    quiet = _sums(_cycle(rng, 0, h=h, beam_noise=1e-9, noise=1e-12)).moments()[0]
    fit = fit_cycle(0, quiet, LAYOUT)
    assert fit.skipped.startswith("H ill-conditioned (column correlation determinant")
    assert fit.condition < 1e-10 and np.isnan(fit.beta).all()


def test_a_coil_with_too_few_windows_is_refused():
    """A cycle cut short (the end of the run): the coils not yet driven have no windows."""
    windows = _cycle(np.random.default_rng(9), 0)
    fit = fit_cycle(0, _sums(tuple(x[:605] for x in windows)).moments()[0], LAYOUT)
    assert fit.skipped == ("too few windows with current (needs 10): c4 5 windows, c5 0 windows")
    assert np.isnan(fit.beta).all()
    no_beam = replace(LAYOUT, variables=())
    assert "no beam variable" in fit_cycle(0, CycleMoments.empty(5, 0, 3), no_beam).skipped


def test_the_dithered_asymmetry_subtracts_the_sensitivities_times_the_differences():
    rng = np.random.default_rng(10)
    run = dither(_sums(_stream(rng, 4)).moments(), LAYOUT)
    raw, raw_error = np.array([1e-3, 2e-3, 1.5e-3]), np.array([1e-4, 2e-4, 1e-4])
    dx = np.array([2e-3, -1e-3, 1e-4, 0.0, 1e-6])
    out = dithered(raw, raw_error, 500, dx, run)
    expected = raw - dx @ run.beta
    error = np.sqrt(raw_error**2 + np.einsum("v,mvw,w->m", dx, run.covariance, dx))
    assert out.channels["b"] == pytest.approx(out.channels["b"])
    assert (out.channels["a"].value, out.channels["b"].value) == (expected[0], expected[1])
    assert out.channels["a"].error == error[0] and out.channels["a"].n == 500
    assert (out.combined.value, out.combined.error) == (expected[2], error[2])
    assert out.sensitivities == run.sensitivities() and out.skipped == ""
    assert error[0] > raw_error[0]  # the sensitivities' own errors enter


def test_a_fb_combines_the_corrected_forward_and_backward_by_the_cross_ratio():
    """A_FB: the cross ratio of the corrected forward and backward sums, ~ (a_b - a_f) / 2;
    the combined sensitivities are the cross-ratio target's, ~ (beta_b - beta_f) / 2 (as
    the regression's), with the error of the difference: forward and backward move with
    the same beam jitter, so it is well below theirs in quadrature."""
    layout = Layout(LAYOUT.coils, VARIABLES, ("f", "b"), ("forward", "backward"))
    assert layout.targets == ("f", "b", "forward", "backward", CROSS_RATIO)
    k = K_TRUE[:, [0, 1, 0, 1]].copy()
    time, current, beam, yields = _stream(np.random.default_rng(11), 3, k=k, noise=1e-4)
    cross = np.sqrt(yields[:, 3] / yields[:, 2])
    sums = _sums((time, current, beam, np.column_stack([yields, cross])), targets=5)
    run = dither(sums.moments(), layout)
    raw = np.array([0.01, -0.01, 0.012, -0.008])
    dx = np.array([0.01, 0.0, 0.0, 0.0, 0.0])
    out = dithered(raw, np.full(4, 1e-3), 100, dx, run)
    a_f, a_b = raw[2:] - dx @ run.beta[:, 2:4]
    assert out.combined.value == pytest.approx((a_b - a_f) / 2, rel=1e-3)
    correction = dx @ run.covariance[4] @ dx
    assert out.combined.error == pytest.approx(math.sqrt(1e-6 / 2 + correction), rel=1e-3)
    combined = run.sensitivities()[(COMBINED, "x")]
    assert combined.value == pytest.approx((run.beta[0, 3] - run.beta[0, 2]) / 2, abs=1e-4)
    assert combined.error == math.sqrt(run.covariance[4, 0, 0])


@pytest.mark.parametrize("noise", [3e-3, 1e-4])
def test_a_fb_combined_sensitivities_have_the_errors_of_the_difference(noise):
    """200 pseudo-cycles of A_FB, forward and backward seeing opposite slopes in x (as in
    bench/bench_dithering.py): the combined sensitivities' pulls against (k_b - k_f) / 2
    are N(0, 1).  Forward and backward taken as independent, the pulls had a width of 0.48
    at 1e10 muons/s: the beam jitter moves both."""
    k = np.zeros((len(VARIABLES), 4))
    k[0] = [0.1, -0.1, 0.1, -0.1]  # f, b and their groups: +-10 % per mm in x
    k[1] = [0.02, 0.05, 0.02, 0.05]
    truth = (k[:, 1] - k[:, 0]) / 2
    layout = Layout(LAYOUT.coils, VARIABLES, ("f", "b"), ("forward", "backward"))
    rng = np.random.default_rng(12)
    pulls = []
    for cycle in range(PSEUDO_CYCLES):
        time, current, beam, yields = _cycle(rng, cycle, k=k, noise=noise)
        cross = np.sqrt(yields[:, 3] / yields[:, 2])
        sums = _sums((time, current, beam, np.column_stack([yields, cross])), targets=5)
        run = dither(sums.moments(), layout)
        combined = run.sensitivities()
        pulls.append([(combined[(COMBINED, v)].value - truth[i]) / combined[(COMBINED, v)].error
                      for i, v in enumerate(VARIABLES)])  # fmt: skip
    _pull_bands(np.array(pulls))


# -- through the simulator and the accumulator ------------------------------------------------

MODULATION = ModulationConfig(enabled=True, period=3.0, coil_time=0.5)
"""A cycle every 3 s (from t = 3 s): five coils of 0.5 s, 120 windows each at 240 Hz."""
SENSITIVITY = {"x": 0.1, "y": -0.05, "xp": 0.02, "dpp": 3.0}
BEAM = BeamlineConfig(
    {"x": {"hc_difference": 0.02}},
    {"default": SENSITIVITY, "scat_0": {"x": -0.2, "yp": 0.05}},
)


def _blocks(config: SourceConfig, windows: int, block: int = 960):
    source = WindowSource(config)
    out = []
    while source.next_seq < windows:
        out.append(source.next_block_of(min(block, windows - source.next_seq)).block)
    return out


def _analysed(config: SourceConfig, windows: int, **options) -> RunAnalysis:
    analysis = RunAnalysis(settings_of(config), **options)
    for block in _blocks(config, windows):
        analysis.feed(block)
    analysis.finish()
    return analysis


def _truth(config: SourceConfig, channel: str) -> dict[str, float]:
    table = config.beamline.sensitivity
    own = table.get(channel, table.get("default", {}))
    return {v: own.get(v, 0.0) for v in VARIABLES}


def test_modulation_patterns_never_enter_the_main_sums():
    """The main sums of a run with modulation equal, to the bit, those of the same decoded
    windows with every pattern holding a modulation window removed; those patterns are
    counted, and their windows stay in the helicity-sorted counts."""
    config = SourceConfig(muon_rate=1e9, beamline=BEAM, modulation=MODULATION, seed=12)
    blocks = _blocks(config, 240 * 9 - 20, block=333)  # two cycles, ends between cycles
    cmap = config.resolved_channel_map()
    decoder = HelicityDecoder(config.pattern, config.delay_patterns, len(cmap.channels))
    decoded = [decoder.feed(b) for b in blocks] + [decoder.flush()]
    acc = RunAccumulator(cmap, 4, minirun_patterns=60)
    for d in decoded:
        acc.add(d)
    whole = DecodedWindows.concatenate(decoded)
    flagged = (whole.window_flags() & FLAG_MODULATION) != 0
    assert 0 < flagged.sum() < whole.n_windows
    removed = np.isin(whole.pattern_number, np.unique(whole.pattern_number[flagged]))
    kept = DecodedWindows(
        **{
            name: None if getattr(whole, name) is None else getattr(whole, name)[~removed]
            for name in DecodedWindows.__dataclass_fields__
        }
    )
    reference = RunAccumulator(cmap, 4, minirun_patterns=60)
    reference.add(kept)

    assert len(acc.miniruns) == len(reference.miniruns) > 2
    cut = sum(m.patterns_modulation for m in acc.miniruns)
    good_flagged = np.unique(whole.pattern_number[flagged & whole.good])
    assert cut == good_flagged.size > 0 and acc.modulation_cycles == 2
    assert sum(m.patterns_modulation for m in reference.miniruns) == 0
    main = ("moments", "regression", "good_counts", "good_windows", "good_beam_monitor_fixed",
            "good_analysing_fixed", "good_null_counts", "good_null_windows",
            "good_null_beam_monitor_fixed", "patterns_good", "patterns_beam_cut")  # fmt: skip
    for ours, theirs in zip(acc.miniruns, reference.miniruns, strict=True):
        for name in main:
            a, b = getattr(ours, name), getattr(theirs, name)
            assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, name
    assert int(acc.sorted_counts().sum()) > int(reference.sorted_counts().sum())
    ours, theirs = run_result(acc, 0.9), run_result(reference, 0.9)
    assert ours.combined == theirs.combined and ours.regressed == theirs.regressed
    assert ours.patterns_modulation == cut and theirs.dithered is None
    assert ours.dithered is not None and len(ours.dither_cycles) == 2


@pytest.mark.parametrize("mode", ["alr", "afb"])
def test_dithering_finds_the_simulated_sensitivities_and_agrees_with_the_regression(mode):
    """Four cycles: every channel's dithering sensitivities within 4 sigma of the
    simulated ones (the combined ones within 3), the run's combined ones within 3 sigma
    of the regression's, each cycle's regression-minus-dithering slopes within 4; the
    dithered asymmetry corrects the helicity-correlated 20 um as the regression does."""
    beam = BEAM
    if mode == "afb":
        beam = BeamlineConfig(
            {"x": {"hc_difference": 0.02}},
            {"gamma_fwd": {"x": 0.1, "y": 0.05}, "gamma_bwd": {"x": -0.1, "dpp": 2.0}},
        )
    config = SourceConfig(
        mode=mode, muon_rate=1e10, beamline=beam, modulation=MODULATION, seed=13,
        asymmetry=1e-3 if mode == "alr" else 1e-2,
    )  # fmt: skip
    analysis = _analysed(config, 240 * 15 - 24)
    result = analysis.result()
    assert result.dither_skipped == "" and len(result.dither_cycles) == 4
    assert all(c.skipped == "" and c.dead_coils == () for c in result.dither_cycles)
    cmap = analysis.acc.channel_map
    for channel in cmap.names:
        truth = _truth(config, channel)
        for v in VARIABLES:
            s = result.dither_sensitivities[(channel, v)]
            assert abs(s.value - truth[v]) < 4 * s.error, (channel, v, s)
    if mode == "alr":  # the scatter sum: the channels' truths weighted by their counts
        counts = sum(m.good_counts.sum(axis=0) for m in analysis.acc.miniruns)
        weights = counts / counts.sum()
        combined = {
            v: sum(w * _truth(config, c)[v] for w, c in zip(weights, cmap.names, strict=True))
            for v in VARIABLES
        }
    else:
        fwd, bwd = _truth(config, "gamma_fwd"), _truth(config, "gamma_bwd")
        combined = {v: (bwd[v] - fwd[v]) / 2 for v in VARIABLES}
    for v in VARIABLES:
        dit, reg = result.dither_sensitivities[(COMBINED, v)], result.slopes[(COMBINED, v)]
        assert abs(dit.value - combined[v]) < 3 * dit.error, (v, dit, combined[v])
        assert abs(reg.value - dit.value) < 3 * math.hypot(reg.error, dit.error), (v, reg, dit)
    for cycle in result.dither_cycles:
        assert set(cycle.regression_difference) == set(cycle.sensitivities)
        for key, difference in cycle.regression_difference.items():
            assert abs(difference.value) < 4 * difference.error, (cycle.cycle, key)
    expected = config.expected_asymmetry
    assert abs(result.combined.value - expected) > 5 * result.combined.error  # beam-biased
    assert abs(result.dithered.value - expected) < 3 * result.dithered.error
    assert abs(result.regressed.value - expected) < 3 * result.regressed.error
    assert result.patterns_modulation == sum(m.patterns_modulation for m in result.miniruns)
    assert sum(len(m.dither_cycles) for m in result.miniruns) == 4


def test_a_stuck_coil_is_found_within_one_cycle():
    stuck = replace(MODULATION, stuck=("coil_3",))
    config = SourceConfig(muon_rate=1e9, beamline=BEAM, modulation=stuck, seed=14)
    result = _analysed(config, 240 * 6 - 24).result()  # one cycle
    (cycle,) = result.dither_cycles
    assert cycle.dead_coils == ("coil_3",)
    assert "dead coil coil_3" in cycle.skipped and "coil_3" in result.dither_skipped
    main = cycle.response[("coil_1", "x")]
    assert main.value == pytest.approx(1e-3, rel=0.05)  # the working coils respond
    assert result.dithered is not None and math.isnan(result.dithered.value)


def test_dithering_does_not_depend_on_block_cuts_or_a_restart_inside_a_cycle():
    beam = BeamlineConfig({}, {"default": SENSITIVITY})
    config = SourceConfig(mode="afb", muon_rate=1e9, beamline=beam, modulation=MODULATION, seed=15)
    blocks = _blocks(config, 240 * 8, block=37)
    settings = settings_of(config)
    one_by_one, restarted, at_once = (RunAnalysis(settings, 200) for _ in range(3))
    for i, block in enumerate(blocks):
        one_by_one.feed(block)
        restarted.feed(block)
        if i == 24:  # 925 windows: inside the first cycle (from window 720)
            assert restarted.acc.last_modulated
            state = json.loads(json.dumps(restarted.acc.state()))
            restarted.acc = RunAccumulator.from_state(settings.channel_map, state)
            assert json.dumps(restarted.acc.state()) == json.dumps(state)
    at_once.feed_blocks(blocks)
    for a in (one_by_one, restarted, at_once):
        a.finish()
    assert json.dumps(restarted.acc.state()) == json.dumps(one_by_one.acc.state())
    for ours, theirs in zip(one_by_one.acc.miniruns, at_once.acc.miniruns, strict=True):
        assert ours.modulation == theirs.modulation and ours.modulation.cells
        assert ours.patterns_modulation == theirs.patterns_modulation
        assert ours.moments == theirs.moments and ours.regression == theirs.regression
    pieces, whole = one_by_one.result(), at_once.result()
    assert len(whole.dither_cycles) == 2  # the second cut by the end of the run
    assert "coil_5 0 windows" in whole.dither_cycles[1].skipped
    assert repr(whole.dither_cycles) == repr(pieces.dither_cycles)  # NaN equals NaN
    assert whole.dithered == pieces.dithered and np.isfinite(whole.dithered.value)
    assert whole.dither_sensitivities == pieces.dither_sensitivities


def test_an_accumulator_state_from_before_the_modulation_cut_is_refused():
    cmap = SourceConfig().resolved_channel_map()
    state = RunAccumulator(cmap, 4, 200).state()
    with pytest.raises(ValueError, match="version 5 is not 7"):
        RunAccumulator.from_state(cmap, {**state, "version": 5})
    with pytest.raises(ValueError, match="different channel map"):
        RunAccumulator.from_state(cmap, {**state, "coils": ["coil_1"]})


def test_without_modulation_nothing_changes():
    config = SourceConfig(muon_rate=1e9, beamline=BEAM, seed=16)
    result = _analysed(config, 2400).result()
    assert result.dithered is None and result.dither_cycles == () and result.dither_skipped == ""
    assert result.patterns_modulation == 0 and result.dither_sensitivities == {}


@pytest.mark.pseudo_runs
def test_dithering_pulls_over_pseudo_runs():
    """200 pseudo-runs of one cycle each (A_LR, 1e10 muons/s, a 20 um helicity-correlated
    x): the combined dithering sensitivities and the dithered asymmetry are N(0, 1) about
    the truth within 3 sigma of 200 runs, where the raw asymmetry is >= 10 sigma off."""
    uniform = BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": SENSITIVITY})
    config = SourceConfig(muon_rate=1e10, beamline=uniform, modulation=MODULATION)
    pulls: dict[str, list[float]] = {v: [] for v in ("x", "y", "dpp")}
    raw, corrected = [], []
    for seed in range(PSEUDO_CYCLES):
        result = _analysed(replace(config, seed=3000 + seed), 240 * 6 - 24).result()
        for v, values in pulls.items():
            s = result.dither_sensitivities[(COMBINED, v)]
            values.append((s.value - SENSITIVITY[v]) / s.error)
        expected = config.expected_asymmetry
        raw.append((result.combined.value - expected) / result.combined.error)
        corrected.append((result.dithered.value - expected) / result.dithered.error)
    for values in [*pulls.values(), corrected]:
        assert abs(np.mean(values)) < PULL_MEAN_BAND
        assert abs(np.std(values) - 1) < PULL_WIDTH_BAND
    assert np.mean(raw) > 10


@pytest.mark.pseudo_runs
def test_dithering_stays_unbiased_at_the_muonic_atom_rate():
    """The weakest place: A_FB at the talk's rate (1e8 muons/s, a few counts per gamma
    detector and window), the beam steered 20 um and seen at 10 %/mm, one modulation cycle
    every 12 s in a 40 s run: over 100 pseudo-runs the dithered asymmetry is defined every
    time and its pulls have mean 0 and width 1 within their 3-sigma bands (the error then
    carries the sensitivities' own, larger than the raw error)."""
    beam = BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": {"x": 0.1}})
    modulation = ModulationConfig(enabled=True, period=12.0)
    pulls, ratios = [], []
    for seed in range(100):
        config = SourceConfig(
            mode="afb", muon_rate=1e8, asymmetry=1e-2, seed=seed, beamline=beam,
            modulation=modulation,
        )  # fmt: skip
        analysis = RunAnalysis(settings_of(config), minirun_patterns=10**6)
        source = WindowSource(config)
        for _ in range(40):
            analysis.feed(source.next_block_of(240).block)
        analysis.finish()
        result = analysis.result()
        dithered = result.dithered
        assert dithered is not None and np.isfinite(dithered.value), result.dither_skipped
        pulls.append((dithered.value - config.expected_asymmetry) / dithered.error)
        ratios.append(dithered.error / result.combined.error)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 3 / np.sqrt(pulls.size)
    assert abs(pulls.std() - 1) < 3 / np.sqrt(2 * pulls.size)
    assert np.mean(ratios) > 1  # the sensitivities' errors are not hidden
