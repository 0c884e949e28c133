"""The beam line: monitors in the channel map, the simulated beam, measured differences and
the regression through the whole analysis (sim -> RunAnalysis; no CA)."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from support.simulated import settings_of

from mupnc.daq.beamline import BEAM_VARIABLES, BeamLine
from mupnc.daq.channel_map import ChannelMap, ChannelMapError, default_channel_map, load_channel_map
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.run_file import RunFileError, load_run_file
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.source import SourceConfig, WindowSource

BPM = 'role = "bpm"\naxis = "x"\nz = -4.0\nunit = "nm"\nresolution = 1000\n'


def _analysed(config: SourceConfig, windows: int, block: int = 960, **options) -> RunAnalysis:
    source = WindowSource(config)
    analysis = RunAnalysis(settings_of(config), **options)
    while source.next_seq < windows:
        analysis.feed(source.next_block_of(min(block, windows - source.next_seq)).block)
    analysis.finish()
    return analysis


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, message",
    [
        (BPM.replace("resolution = 1000\n", ""), "line 2: channel 'b': 'resolution' is missing"),
        (BPM.replace('axis = "x"', 'axis = "z"'), "'axis' must be 'x' or 'y', got 'z'"),
        (BPM.replace('axis = "x"', 'axis = "y"') + "dispersion = 1.0\n", "only an axis 'x'"),
        (BPM.replace('unit = "nm"', 'unit = "furlong"'), "'unit' must be one of"),
        (BPM + "acceptance = 0.1\n", "'acceptance' is for detectors"),
        (BPM.replace("resolution = 1000", "resolution = -1"), "'resolution' must be a positive"),
        ('role = "scatter"\nacceptance = 1e-4\naxis = "x"\n', "'axis' is a key of beam position"),
    ],
)
def test_a_bad_beam_monitor_is_refused_in_one_line_naming_file_and_key(tmp_path, entry, message):
    path = tmp_path / "map.toml"
    path.write_text(
        f'mode = "alr"\n[[channels]]\nname = "b"\n{entry}'
        '[[channels]]\nname = "s"\nrole = "scatter"\nacceptance = 1e-4\n'
    )
    with pytest.raises(ChannelMapError) as err:
        load_channel_map(path)
    text = str(err.value)
    assert text.startswith(f"{path}, line ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    "section, message",
    [
        ("[beamline.q]\njitter = 0.1\n", "line 1: [beamline.q]: unknown beam variable 'q'"),
        ("[beamline.x]\nwobble = 1\n", "line 2: [beamline.x] wobble: unknown key"),
        ("[beamline.x]\njitter = -0.1\n", "line 2: [beamline.x] jitter: must be >= 0"),
        ("[beamline.x]\njitter = 'big'\n", "[beamline.x] jitter: must be a number"),
        (
            "[beamline.sensitivity]\nscat_99 = { x = 1e-3 }\n",
            "line 2: [beamline.sensitivity] scat_99: the channel map has no channel 'scat_99'",
        ),
        (
            "[beamline.sensitivity]\nbpm_a_x = { x = 1e-3 }\n",
            "'bpm_a_x' is a beam position monitor, not a detector",
        ),
        (
            "[beamline.sensitivity]\ndefault = { z = 1e-3 }\n",
            "[beamline.sensitivity] default: unknown beam variable 'z'",
        ),
    ],
)
def test_a_bad_beamline_section_is_refused_in_one_line(tmp_path, section, message):
    path = tmp_path / "run.toml"
    path.write_text(section)
    with pytest.raises(RunFileError) as err:
        load_run_file(path)
    assert str(err.value) == f"{path}, {message}" or (
        str(err.value).startswith(f"{path}, line ") and message in str(err.value)
    )


def test_the_beamline_section_reaches_the_simulation(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[reversal]\nscheme = "slow"\n[beamline.x]\nhc_difference = 0.003\njitter = 0.01\n'
        "[beamline.sensitivity]\ndefault = { x = 1e-3 }\nscat_2 = { y = -2e-3 }\n"
    )
    config = SourceConfig(**load_run_file(path))
    x = config.beamline.variable("x", config.scheme)
    assert (x.hc_difference, x.jitter) == (0.003, 0.01)
    assert config.beamline.variable("y", "slow").hc_difference == -1e-3  # the slow default
    sensitivity = config.beamline.sensitivities(config.resolved_channel_map().detectors())
    assert sensitivity[0, 0] == 1e-3 and sensitivity[1, 2] == -2e-3 and sensitivity[0, 2] == 0


def test_the_shipped_maps_measure_every_beam_variable_and_survive_json():
    for mode in ("alr", "afb"):
        channel_map = default_channel_map(mode)
        assert BeamLine.of(channel_map).variables == BEAM_VARIABLES
        assert ChannelMap.from_json(channel_map.to_json()) == channel_map
        assert "bpm" not in {c.role for c in channel_map.detectors().channels}


# -- the beam at the target ----------------------------------------------------------------


def test_target_variables_follow_from_the_monitors_within_their_resolution():
    """20000 windows: the reconstructed beam differs from the truth by the monitors'
    resolution propagated through the fit (within 3 % in rms)."""
    source = WindowSource(SourceConfig(mode="afb", seed=4))
    block = source.next_block_of(20000)
    line = BeamLine.of(source.channel_map)
    residual = line.at_target(block.block.counts) - block.beam
    expected = np.sqrt((line.matrix**2) @ (line.resolution_mm**2))
    np.testing.assert_allclose(residual.std(axis=0), expected, rtol=0.03)
    assert np.abs(residual.mean(axis=0)).max() < 0.05 * expected.max()


def test_a_monitor_beyond_its_range_cuts_the_pattern_and_is_counted():
    """x jitter of 4 mm against a 10 mm range: some patterns are cut, counted, and none of
    their windows reaches the asymmetries or the differences."""
    config = SourceConfig(beamline=BeamlineConfig({"x": {"jitter": 4.0}}), seed=5)
    analysis = _analysed(config, 24000)
    acc = analysis.acc
    cut = sum(m.patterns_beam_cut for m in acc.miniruns)
    assert 0 < cut < 6000
    assert acc.good_patterns + cut == 6000
    assert acc.run_stats("beam_difference").n[0] == acc.good_patterns
    assert analysis.result().patterns_beam_cut == cut

    # each cut pattern counts in the minirun it falls in, however the windows are cut into
    # blocks (they all counted in the first minirun of the block that brought them)
    whole = WindowSource(config).next_block_of(24000).block
    by_block_size = {}
    for size in (37, 24000):
        per_minirun = RunAnalysis(settings_of(config), 500)
        for start in range(0, 24000, size):
            per_minirun.feed(whole.select(slice(start, start + size)))
        per_minirun.finish()
        by_block_size[size] = [m.patterns_beam_cut for m in per_minirun.acc.miniruns]
    assert by_block_size[37] == by_block_size[24000]
    assert len(by_block_size[37]) > 3 and sum(by_block_size[37]) > 0


# -- regression through the analysis -------------------------------------------------------


def test_injected_sensitivities_are_recovered_within_three_sigma():
    """Eight scatter channels, each with its own sensitivity to all five variables, 100 s
    at 1e10 muons/s: every channel x variable slope within 3 sigma of the injected one."""
    rng = np.random.default_rng(7)
    injected = {
        f"scat_{c}": dict(
            zip(BEAM_VARIABLES, rng.normal(0, [0.05, 0.05, 0.2, 0.2, 20]), strict=True)
        )
        for c in range(8)
    }
    config = SourceConfig(muon_rate=1e10, beamline=BeamlineConfig({}, injected), seed=8)
    result = _analysed(config, 24000).result()
    pulls = [
        (result.slopes[(channel, v)].value - injected[channel][v])
        / result.slopes[(channel, v)].error
        for channel in injected
        for v in BEAM_VARIABLES
    ]
    assert np.abs(pulls).max() < 3.0
    assert abs(np.mean(pulls)) < 3 / np.sqrt(len(pulls))


def _pseudo_runs(config: SourceConfig, runs: int, windows: int, minirun: int | None = None):
    """Raw and regressed pulls of the combined asymmetry against the expected one."""
    raw, regressed = [], []
    for seed in range(runs):
        result = _analysed(
            replace(config, seed=1000 + seed), windows, minirun_patterns=minirun
        ).result()
        expected = config.expected_asymmetry
        raw.append((result.combined.value - expected) / result.combined.error)
        regressed.append((result.regressed.value - expected) / result.regressed.error)
    return np.array(raw), np.array(regressed)


PSEUDO_RUNS = 200
PULL_MEAN_BAND, PULL_WIDTH_BAND = 3 / math.sqrt(PSEUDO_RUNS), 3 / math.sqrt(2 * PSEUDO_RUNS)
"""3 sigma of a pull mean and width over the pseudo-runs; the issue's +-0.1 on both needs
1000 of them: ``bench/bench_regression_pulls.py`` (BENCHMARKS.md)."""
HC_X = BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": {"x": 0.1}})
"""A 20 um helicity-correlated position difference seen by every detector at 10 %/mm."""


@pytest.mark.pseudo_runs
@pytest.mark.parametrize(
    "scheme, windows, options",
    [
        ("fast", 4000, {}),
        ("slow", 9600, {"flip_period": 0.1, "ramp_time": 0.01, "settle_time": 0.01}),
        ("kick", 9600, {"flip_period": 0.1, "settle_time": 0.01, "kick_precession": 12.3}),
    ],
)
def test_regressed_asymmetry_is_unbiased_where_the_raw_one_is_off_by_ten_sigma(
    scheme, windows, options
):
    """200 pseudo-runs (A_LR, 1e10 muons/s; 1000 fast quartets, or 100 rotator quartets of
    0.1 s intervals): raw pulls centred >= 10 sigma off; regressed pulls N(0, 1) within
    3 sigma of 200 runs.  Its errors are the least-squares intercept's, so a few
    dozen patterns give Student's t (t_19: width 1.06): pseudo-runs hold 100 patterns."""
    config = SourceConfig(muon_rate=1e10, scheme=scheme, beamline=HC_X, asymmetry=1e-3, **options)
    raw, regressed = _pseudo_runs(config, PSEUDO_RUNS, windows, minirun=10**6)
    assert raw.mean() > 10
    assert abs(regressed.mean()) < PULL_MEAN_BAND
    assert abs(regressed.std() - 1) < PULL_WIDTH_BAND


@pytest.mark.pseudo_runs
def test_without_beam_correlation_regressed_and_raw_agree():
    """No helicity-correlated difference, no sensitivity (200 pseudo-runs): the regressed
    value moves by a small fraction of the raw error, and its error exceeds the raw one by
    no more than the degrees of freedom the five slopes take."""
    quiet = BeamlineConfig({v: {"hc_difference": 0.0} for v in BEAM_VARIABLES})
    config = SourceConfig(muon_rate=1e10, beamline=quiet, asymmetry=1e-3)
    shifts, ratios = [], []
    for seed in range(200):
        result = _analysed(replace(config, seed=2000 + seed), 4000).result()
        shifts.append((result.regressed.value - result.combined.value) / result.combined.error)
        ratios.append(result.regressed.error / result.combined.error)
    n = 1000  # patterns per pseudo-run
    assert np.std(shifts) < 3 * np.sqrt(5 / n)
    assert np.median(ratios) <= np.sqrt((n - 1) / (n - 5 - 1)) * (1 + 5 / n)


def test_regression_does_not_depend_on_how_the_windows_are_cut_into_blocks():
    config = SourceConfig(mode="afb", muon_rate=1e9, scheme="fast", beamline=HC_X, seed=9)
    source = WindowSource(config)
    blocks = [source.next_block_of(37).block for _ in range(260)]
    settings = settings_of(config)
    one_by_one, at_once = RunAnalysis(settings, 500), RunAnalysis(settings, 500)
    for block in blocks:
        one_by_one.feed(block)
    at_once.feed_blocks(blocks)
    # as the monitor feeds what it received together: groups of at most so many values
    values = blocks[0].n_windows * blocks[0].n_channels
    grouped = [RunAnalysis(settings, 500) for _ in range(2)]
    grouped[0].feed_blocks(blocks, at_most=3 * values + 1)  # three blocks a group
    grouped[1].feed_blocks(blocks, at_most=values - 1)  # a longer block alone
    whole, pieces = (a.finish() or a.result() for a in (at_once, one_by_one))
    assert whole.regressed == pieces.regressed and np.isfinite(whole.regressed.value)
    assert whole.slopes == pieces.slopes and whole.beam == pieces.beam
    assert [m.regressed for m in whole.miniruns] == [m.regressed for m in pieces.miniruns]
    for analysis in grouped:
        analysis.finish()
        assert json.dumps(analysis.acc.state()) == json.dumps(at_once.acc.state())
        assert analysis.state.windows_released == len(blocks) * blocks[0].n_windows


def test_an_analysis_restored_from_its_state_regresses_bit_identically():
    from mupnc.monitor.analysis.accumulator import RunAccumulator

    config = SourceConfig(beamline=HC_X, seed=10)
    analysis = _analysed(config, 8000, minirun_patterns=300)
    restored = RunAccumulator.from_state(config.resolved_channel_map(), analysis.acc.state())
    assert [m.regression for m in restored.miniruns] == [
        m.regression for m in analysis.acc.miniruns
    ]


def test_regress_chooses_the_variables_and_refuses_an_unmeasured_one():
    config = SourceConfig(beamline=HC_X, seed=11)
    only_x = _analysed(config, 4000, regress=("x",)).result()
    assert only_x.regressed_variables == ("x",)
    assert {v for _, v in only_x.slopes} == {"x"}
    nothing = _analysed(config, 4000, regress=()).result()
    assert nothing.regressed is None and nothing.beam["x"].n == 1000
    channel_map = config.resolved_channel_map()
    no_dispersion = ChannelMap(
        channel_map.mode, tuple(c for c in channel_map.channels if c.name != "bpm_disp_x")
    )
    config = replace(config, channel_map=no_dispersion)
    with pytest.raises(
        ValueError, match=r"'dpp' is not measured in this run \(measured: x, y, xp, yp\)"
    ):
        _analysed(config, 400, regress=("dpp",)).result()


@pytest.mark.pseudo_runs
def test_a_fb_regressed_cross_ratio_is_unbiased_where_the_detectors_see_opposite_slopes():
    """A_FB: the beam moving towards one gamma detector and away from the other (+-10 %/mm)
    does not cancel in the cross ratio; 200 pseudo-runs at 1e10 muons/s: raw pulls >= 10
    sigma off, regressed pulls N(0, 1) within 3 sigma of 200 runs."""
    beam = BeamlineConfig(
        {"x": {"hc_difference": 0.02}},
        {"gamma_fwd": {"x": 0.1}, "gamma_bwd": {"x": -0.1}},
    )
    config = SourceConfig(mode="afb", muon_rate=1e10, beamline=beam, asymmetry=1e-2)
    raw, regressed = _pseudo_runs(config, PSEUDO_RUNS, 4000, minirun=10**6)
    assert raw.mean() < -10  # the cross ratio goes as (a_backward - a_forward) / 2
    assert abs(regressed.mean()) < PULL_MEAN_BAND
    assert abs(regressed.std() - 1) < PULL_WIDTH_BAND
