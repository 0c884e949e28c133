"""Muon polarimetry: the simulator's decay-positron counters, the monitor's measured
polarization per spin state, the flip quality and its alarms, and the physics asymmetry
divided by the measured polarization (:mod:`mupnc.monitor.analysis.polarimetry`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support.simulated import settings_of
from test_alarm_rules import SimulatedMonitor, read

from mupnc.daq.blocks import FLAG_SETTLE
from mupnc.daq.channel_map import ChannelMap, ChannelMapError, default_channel_map
from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.inputs import polarimeter_observations
from mupnc.monitor.alarms.rules import load_rules
from mupnc.monitor.analysis.polarimetry import Polarimeter, measure
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.run_file import load_run_file
from mupnc.sim.polarimeter import PolarimeterConfig
from mupnc.sim.source import SourceConfig, WindowSource

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
ON = PolarimeterConfig(enabled=True)
INCOMPLETE = replace(ON, polarization_minus=-0.8)
"""The - state at 0.8 where the + state has 0.9: an incomplete flip."""
RUNS = 200
MEAN_BAND, WIDTH_BAND = 3 / math.sqrt(RUNS), 3 / math.sqrt(2 * RUNS)


def _polarimeter(balance: float = 1.0) -> Polarimeter:
    return Polarimeter(forward=(0,), backward=(1,), analysing_power=1 / 3, balance=balance)


# -- pure ----------------------------------------------------------------------------------


def test_the_states_and_the_cross_ratio_from_exact_counts():
    """Counts without noise: P+ and P- per state with the configured balance, the cross
    ratio's effective polarization (exact for a complete flip, (P+ - P-)/2 to first order
    otherwise), the flip quality and the balance a complete flip would give."""
    a, eff_f, eff_b = 1 / 3, 1000.0, 800.0

    def counts(p_plus: float, p_minus: float) -> np.ndarray:
        return (
            np.array(
                [
                    [eff_f * (1 + a * p_plus), eff_b * (1 - a * p_plus)],
                    [eff_f * (1 + a * p_minus), eff_b * (1 - a * p_minus)],
                ]
            )
            * 1e6
        )

    complete = measure(counts(0.9, -0.9), _polarimeter(eff_f / eff_b), 100)
    assert complete.plus.value == pytest.approx(0.9) and complete.minus.value == pytest.approx(-0.9)
    assert complete.effective.value == pytest.approx(0.9)
    assert complete.flip_quality.value == pytest.approx(0.0, abs=1e-12)
    assert complete.balance_measured == pytest.approx(eff_f / eff_b)
    partial = measure(counts(0.9, -0.8), _polarimeter(eff_f / eff_b), 100)
    assert partial.minus.value == pytest.approx(-0.8)
    assert partial.effective.value == pytest.approx(0.85, rel=1e-3)
    assert partial.flip_quality.value == pytest.approx(0.1)
    assert partial.flip_sigma > 100  # 1e9 counts: a 0.1 difference is known to 1e-4
    nothing = measure(np.zeros((2, 2)), _polarimeter(), 0)
    assert all(math.isnan(x) for x in (nothing.plus.value, nothing.effective.value))
    assert math.isnan(nothing.flip_sigma)


def test_a_polarimeter_needs_both_directions_and_a_physical_analysing_power():
    base = default_channel_map("alr").to_json()
    one_way = base.replace("]}", ', {"name": "p", "role": "pol_forward", "acceptance": 0.001}]}')
    with pytest.raises(ChannelMapError, match="needs both directions"):
        ChannelMap.from_json(one_way)
    counters = (
        '{"name": "p", "role": "pol_forward", "acceptance": 0.001, "analysing_power": 1.5},'
        ' {"name": "q", "role": "pol_backward", "acceptance": 0.001}'
    )
    with pytest.raises(ChannelMapError, match=r"'analysing_power' must be a number in \(0, 1\]"):
        ChannelMap.from_json(base.replace("]}", f", {counters}]}}"))
    with pytest.raises(ChannelMapError, match="polarimeter counters only"):
        scatter = '"role": "scatter", "analysing_power": 0.3'
        ChannelMap.from_json(base.replace('"role": "scatter"', scatter, 1))


# -- through the simulator ------------------------------------------------------------------


def _analysed(config: SourceConfig, seconds: int) -> RunAnalysis:
    analysis = RunAnalysis(settings_of(config), minirun_patterns=10**6)
    source = WindowSource(config)
    for _ in range(seconds):
        analysis.feed(source.next_block_of(240).block)
    analysis.finish()
    return analysis


SCHEMES = {
    "fast": {},
    "slow": dict(scheme="slow", flip_period=0.1, ramp_time=0.01, settle_time=0.01),
    "kick": dict(scheme="kick", flip_period=0.1, settle_time=0.01, kick_precession=12.0),
}


@pytest.mark.pseudo_runs
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("mode", ["alr", "afb"])
def test_measured_polarization_and_the_asymmetry_divided_by_it_are_unbiased(mode, scheme):
    """200 pseudo-runs of 10 s with an incomplete flip (P+ 0.9, P- -0.8; the kick's turns
    rotate the spin further): P+ and P- pulls against the simulator's spin N(0, 1) within
    3 sigma of 200 runs, and the physics asymmetry divided by the measured polarization
    unbiased where the configured polarization leaves it off by more than 5 sigma."""
    config = SourceConfig(
        mode=mode, muon_rate=1e10, asymmetry=1e-2, polarimeter=INCOMPLETE, **SCHEMES[scheme]
    )
    pulls: dict[str, list[float]] = {"plus": [], "minus": [], "asymmetry": [], "configured": []}
    for seed in range(RUNS):
        c = replace(config, seed=4000 + seed)
        analysis = _analysed(c, 10)
        result = analysis.result()
        truth = _spin_truth(c)
        p = result.polarization
        assert p is not None and result.polarization_source == "measured"
        pulls["plus"].append((p.plus.value - truth[0]) / p.plus.error)
        pulls["minus"].append((p.minus.value - truth[1]) / p.minus.error)
        expected = c.expected_asymmetry
        pulls["asymmetry"].append((result.combined.value - expected) / result.combined.error)
        configured = result.configured_combined
        pulls["configured"].append((configured.value - expected) / configured.error)
    for name in ("plus", "minus", "asymmetry"):
        values = np.array(pulls[name])
        assert abs(values.mean()) < MEAN_BAND, (name, values.mean())
        assert abs(values.std() - 1) < WIDTH_BAND, (name, values.std())
    assert abs(np.mean(pulls["configured"])) > 5


@pytest.mark.pseudo_runs
def test_the_polarimeter_demo_divided_by_its_measured_polarization_is_unbiased():
    """``docs/examples/polarimeter.toml`` (A_FB 5 % at 1e8 muons/s, the - state dropping to
    0.7 at 30 s): 200 pseudo-runs of 60 s give
    pulls of A_FB / P_measured against 5 % N(0, 1) within 3 sigma of 200 runs, the
    polarization changing mid-run included.  (The browser test reads one such run.)"""
    fields = load_run_file(EXAMPLES / "polarimeter.toml")
    pulls = []
    for seed in range(RUNS):
        config = SourceConfig(**fields, seed=7000 + seed)
        analysis = RunAnalysis(settings_of(config))
        source = WindowSource(config)
        while source.next_seq < 60 * 240:
            analysis.feed(source.next_block_of(240).block)
        result = analysis.result()
        pulls.append((result.combined.value - 0.05) / result.combined.error)
    values = np.array(pulls)
    print(f"A_FB / P_measured pulls: mean {values.mean():+.3f}, width {values.std():.3f}")
    assert abs(values.mean()) < MEAN_BAND, values.mean()
    assert abs(values.std() - 1) < WIDTH_BAND, values.std()


def _spin_truth(config: SourceConfig) -> tuple[float, float]:
    """The simulator's mean signed polarization of each spin state over the windows the
    monitor keeps (not in a rotator's settle gate; the kick's precession and the flip's
    magnitude included)."""
    block = WindowSource(config).next_block_of(2400)
    kept = (block.block.flags & FLAG_SETTLE) == 0
    spin, state = block.polarization[kept], block.actual_helicity[kept]
    return float(spin[state == 1].mean()), float(spin[state == -1].mean())


def test_an_incomplete_flip_is_alarmed_within_a_minirun_of_its_onset():
    """The demo's rates (1e8 muons/s), the - state's polarization 10 % short of the + one's
    from 30 s on: MAJOR within the minirun filling at the onset (150 s of quartets), and
    not before it; the run's effective polarization stays above the low limit."""
    rules = load_rules()
    fault = replace(ON, fault_at=30.0, fault_polarization_minus=-0.81)
    sim = SimulatedMonitor(config=SourceConfig(seed=31, polarimeter=fault))
    raised = None
    for t in range(1, 181):
        obs = sim.seconds(1)
        severity = read(rules["polarimeter_incomplete_flip"], obs).severity
        if t < 30:
            assert severity == Severity.NO_ALARM, (t, obs["polarimeter.flip_sigma"])
        elif severity == Severity.MAJOR:
            raised = t
            break
    assert raised is not None and raised <= 30 + 150, raised
    assert read(rules["polarimeter_low_polarization"], obs).severity == Severity.NO_ALARM
    print(f"incomplete flip at 30 s alarmed at {raised} s")


@pytest.mark.pseudo_runs
def test_no_polarimeter_alarm_in_a_million_clean_windows():
    """1e6 windows (70 minutes at 240 Hz, miniruns of 9000 quartets) with a complete flip:
    the three polarimeter rules, read every 10 s, never raise."""
    names = ("polarimeter_incomplete_flip", "polarimeter_low_polarization", "polarimeter_drift")
    rules = {name: load_rules()[name] for name in names}
    config = SourceConfig(seed=32, polarimeter=ON)
    analysis = RunAnalysis(settings_of(config))
    source = WindowSource(config)
    worst = 0.0
    while source.next_seq < 1_000_000:
        analysis.feed(source.next_block_of(2400).block)
        obs = polarimeter_observations(analysis.result(), analysis.acc.minirun_patterns)
        worst = max(worst, abs(obs["polarimeter.flip_sigma"].value))
        for name, rule in rules.items():
            assert read(rule, obs).severity == Severity.NO_ALARM, (name, obs)
    assert 0 < worst < 5


def test_the_report_and_a_reanalysis_give_the_measured_polarization(tmp_path, capsys):
    """``mupnc sim`` of a run whose - state loses polarization at 20 s: ``report --json``
    gives the polarization (source measured, P- between -0.9 and -0.7, the flip quality
    many sigma), ``reanalyze --json`` the same to the last bit, and the text report says
    what divides the asymmetry; a run exported and imported again gives it back."""
    import json

    from mupnc.cli import main

    path = tmp_path / "flip.toml"
    path.write_text(
        'mode = "afb"\n[detector]\nasymmetry = 1e-2\n'
        "[polarimeter]\nenabled = true\nfault_at = 20.0\nfault_polarization_minus = -0.7\n"
    )
    db = f"sqlite:///{tmp_path / 'flip.db'}"
    assert main(["--db", db, "sim", "--config", str(path), "--seconds", "40", "--seed", "8"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "report", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    p = report["polarization"]
    assert p["source"] == "measured" and -0.9 < p["minus"]["value"] < -0.7
    assert abs(p["plus"]["value"] - 0.9) < 5 * p["plus"]["error"]
    assert p["flip_quality_sigma"] > 10 and len(p["miniruns"]) == 1
    assert main(["--db", db, "reanalyze", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["polarization"] == p
    assert main(["--db", db, "report", "1"]) == 0
    assert "polarization (measured, divides the asymmetries)" in capsys.readouterr().out
    exported = tmp_path / "flip.parquet"  # the recording carries the polarimeter's counts
    assert main(["--db", db, "export", "1", str(exported)]) == 0
    assert main(["--db", db, "import", str(exported)]) == 0
    capsys.readouterr()
    assert main(["--db", db, "report", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["polarization"] == p


@pytest.mark.parametrize("estimator", ["counting", "integrating"])
@pytest.mark.parametrize("polarimeter", [INCOMPLETE, PolarimeterConfig()], ids=["pol", "none"])
def test_the_newest_result_published_between_full_results_is_the_full_ones(estimator, polarimeter):
    """``RunAnalysis.newest`` (published four times a second) gives exactly the combined
    and charge asymmetries of ``result`` (published each second), blinded, with or without
    a polarimeter (the division by the measured polarization and its error included), by
    both estimators, over several miniruns."""
    from mupnc.monitor.analysis.blinding import Blinder

    config = SourceConfig(muon_rate=1e9, polarimeter=polarimeter, seed=12)
    settings = replace(settings_of(config), blinder=Blinder.from_seed("newest"))
    analysis = RunAnalysis(settings, minirun_patterns=100, estimator=estimator)
    source = WindowSource(config)
    for _ in range(5):
        analysis.feed(source.next_block_of(240).block)
    full, newest = analysis.result(), analysis.newest()
    assert len(full.miniruns) >= 3 and full.blinded and newest.blinded
    assert (newest.combined, newest.charge_asymmetry) == (full.combined, full.charge_asymmetry)
    assert (newest.estimator, newest.patterns_good) == (full.estimator, full.patterns_good)


def test_the_result_pvs_carry_the_measured_polarization():
    """``MON:POL:*`` values of a run with a polarimeter are the result's; without one the
    PVs get no value (they stay NaN, INVALID)."""
    from mupnc.monitor.publisher import beam_values

    result = _analysed(SourceConfig(muon_rate=1e9, polarimeter=INCOMPLETE, seed=9), 5).result()
    values = beam_values(result, list(result.channels))
    p = result.polarization
    assert (values["pol_plus"], values["pol_minus_err"]) == (p.plus.value, p.minus.error)
    assert values["pol_eff"] == p.effective.value and values["pol_flip"] == p.flip_quality.value
    assert values["pol_flip_sigma"] == result.miniruns[-1].polarization.flip_sigma > 5
    plain = _analysed(SourceConfig(muon_rate=1e9, seed=9), 2).result()
    assert not any(k.startswith("pol_") for k in beam_values(plain, list(plain.channels)))
