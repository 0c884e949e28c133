"""Alarm rules: shipped defaults, what each kind makes of observations, file errors with
file and line, and the recent estimates behind them (mupnc.monitor.alarms.inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.simulated import settings_of

from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.inputs import AlarmInputs, chi2_ndf_z, recent_mean
from mupnc.monitor.alarms.rules import (
    INPUT_DEFAULTS,
    AlarmRulesError,
    Observation,
    load_rules,
    parse_rules,
)
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.results import run_result
from mupnc.monitor.analysis.statistics import RunningStats
from mupnc.monitor.decoding import make_decoder
from mupnc.monitor.decoding.stream import ERROR_KINDS
from mupnc.monitor.ingest_counters import IngestCounters
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.source import SourceConfig, WindowSource

N, MINOR, MAJOR, INVALID = Severity.NO_ALARM, Severity.MINOR, Severity.MAJOR, Severity.INVALID
BEAM_ON = {"beam.on_for": Observation(100.0)}
BRIEF_CLASSES = {
    # the alarm classes issue 7 asks for, and the shipped rules covering each
    "helicity prediction mismatch": "helicity_mismatch",
    "stuck helicity": "stuck_helicity",
    "missed windows": "missed_windows",
    "pattern-phase/sync errors": "phase_error",
    "rotator readback != setpoint": "rotator_mismatch",
    "settle violations": "settle_violation",
    "flip-frequency drift": "flip_frequency",
    "beam trips": "beam_trip",
    "charge asymmetry": "charge_asymmetry",
    "chi2/ndf": "chi2_ndf",
    "pull width": "pull_width",
    "stale PVs": "data_stale",
    "disconnected PVs": "pv_disconnected",
    "lost blocks": "lost_blocks",
    "detector rates": "detector_rate_low",
}


def test_shipped_rules_cover_every_alarm_class_with_guidance() -> None:
    rules = load_rules()
    names = {r.name for r in rules.rules}
    assert set(BRIEF_CLASSES.values()) <= names
    assert all(r.guidance for r in rules.rules)
    counters = {
        r.input.removeprefix("helicity_errors.") for r in rules.rules if r.kind == "counter"
    }
    assert {"prediction_mismatch", "stuck_helicity", "phase_error", "missed_windows"} <= counters
    assert counters - {"blocks_lost", "blocks_malformed", "beam.patterns_cut"} <= set(ERROR_KINDS)
    assert rules["pv_disconnected"].pvs and set(rules["pv_disconnected"].pvs) <= set(rules.pvs)


def read(rule, observations: dict, increase: dict | None = None):
    return rule.read(observations, increase or {})


def test_counter_rule_counts_increases_per_check() -> None:
    rule = load_rules()["phase_error"]
    r = read(rule, {}, {"helicity_errors.phase_error": 3, "windows": 240})
    assert (r.severity, r.violations, r.checks) == (MAJOR, 3, 240)
    assert "+3 in 240 windows" in r.detail


LIMITS = """
[alarms.x]
kind = "limit"
input = "x"
lolo = -2.0
low = -1.0
high = 1.0
hihi = 2.0
"""


@pytest.mark.parametrize(
    ("value", "error", "severity"),
    [(0.0, 0.0, N), (1.0, 0.0, MINOR), (-1.5, 0.0, MINOR), (2.0, 0.0, MAJOR), (-7.0, 0.0, MAJOR),
     (math.nan, 0.0, N), (1.2, 0.1, MINOR)],
)  # fmt: skip
def test_limit_rule_is_inclusive_like_epics(value, error, severity) -> None:
    rule = parse_rules(LIMITS)["x"]
    assert read(rule, {"x": Observation(value, error)}).severity == severity


def test_limit_with_sigma_margin_and_absolute_value() -> None:
    rule = load_rules()["charge_asymmetry"]  # |A| beyond 2.5e-4 by 3 sigma: MINOR
    for value, error, severity in [
        (-1e-3, 2e-4, MINOR),  # 1e-3 - 6e-4 > 2.5e-4
        (6e-4, 2e-4, N),  # within 3 sigma of the limit
        (-6e-4, 1e-5, MINOR),
        (-3e-3, 2e-4, MAJOR),
    ]:
        assert (
            read(rule, {"charge_asymmetry.recent": Observation(value, error), **BEAM_ON}).severity
            == severity
        )


def test_state_pv_severity_and_connection_rules() -> None:
    rules = load_rules()
    trip = rules["beam_trip"]
    assert read(trip, {"BEAM:TRIP": Observation("TRIPPED")}).severity == MAJOR
    assert read(trip, {"BEAM:TRIP": Observation("OK")}).severity == N
    assert read(trip, {"BEAM:TRIP": Observation("TRIPPED", connected=False)}).severity == N
    rate = rules["beam_rate"]
    assert read(rate, {"BEAM:RATE": Observation(5e6, severity=MAJOR)}).severity == MAJOR
    lost = rules["pv_disconnected"]
    pvs = {pv: Observation(1.0) for pv in lost.pvs}
    assert read(lost, pvs).severity == N
    pvs["BEAM:TRIP"] = Observation(None, connected=False)
    r = read(lost, pvs)
    assert r.severity == INVALID and "BEAM:TRIP" in r.detail


def test_gate_closes_the_rule() -> None:
    rule = load_rules()["charge_asymmetry"]  # only with the beam on for 10 s
    bad = {"charge_asymmetry.recent": Observation(1e-2, 1e-4)}
    assert not read(rule, {**bad, "beam.on_for": Observation(3.0)}).enabled
    assert not read(rule, bad).enabled  # unknown beam state: closed
    assert read(rule, {**bad, "beam.on_for": Observation(30.0)}).severity == MAJOR


BAD_FILES = [
    ("[alarms.x\nkind = 1\n", "line 1"),
    ('[alarms.x]\nkind = "counter"\n', r"line 1: \[alarms.x\] a counter alarm needs input"),
    ('[alarms.x]\nkind = "limit"\ninput = "a"\n\nhigh = "big"\n', r"line 5: .*high must be a"),
    ('[alarms.x]\nkind = "gauge"\n', r"line 2: .*kind must be one of"),
    ('[alarms.x]\nkind = "counter"\ninput = "a"\nseverity = "HUGE"\n', r"line 4: .*HUGE"),
    ('[alarms.x]\nkind = "counter"\ninput = "a"\ncolour = "red"\n', r"line 4: .*key 'colour'"),
    ('[alarms.x]\nkind = "counter"\ninput = "a"\nclass = "vip"\n', r"line 4: .*class 'vip'"),
    ('[alarms.x]\nkind = "counter"\ninput = "a"\ncount = 0\n', r"line 1: .*count >= 1"),
    ('[alarms.Bad-Name]\nkind = "counter"\ninput = "a"\n', r"line 1: .*lower case"),
    ('[classes.c]\nactions = ["page"]\n[alarms.x]\nkind = "state"\npv = "A"\nstates = ["B"]\n',
     r"line 2: \[classes.c\] unknown action 'page'"),
    ('[classes.c]\nactions = ["command"]\n', r"line 1: .*needs a command list"),
    ('[inputs]\ncharge_window = -1\n[alarms.x]\nkind = "counter"\ninput = "a"\n',
     r"line 2: .*charge_window must be positive"),
    ("[inputs]\n", "no \\[alarms.NAME\\] table"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_malformed_rules_name_file_and_line(tmp_path, text, message) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(AlarmRulesError, match=message) as err:
        load_rules(path)
    assert str(err.value).startswith(str(path))


def test_unreadable_rules_file(tmp_path) -> None:
    with pytest.raises(AlarmRulesError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")


def test_disabled_rules_are_dropped() -> None:
    rules = parse_rules(
        LIMITS + 'enabled = false\n[alarms.y]\nkind = "state"\npv = "P"\nstates = ["X"]\n'
    )
    assert [r.name for r in rules.rules] == ["y"]


def test_recent_mean_is_the_mean_of_the_newer_samples() -> None:
    rng = np.random.default_rng(5)
    old, new = rng.normal(0, 1, (500, 1)), rng.normal(3e-3, 2, (300, 1))
    before = RunningStats.of(old)
    after = before.merge(RunningStats.of(new))
    moments = [(float(s.n[0]), float(s.mean[0]), float(s.m2[0])) for s in (after, before)]
    mean, error = recent_mean(*moments)
    assert mean == pytest.approx(new.mean(), rel=1e-9)
    assert error == pytest.approx(new.std(ddof=1) / math.sqrt(300), rel=1e-9)
    assert math.isnan(recent_mean(moments[0], moments[0])[0])


def test_chi2_score_is_standard_normal_for_any_ndf() -> None:
    rng = np.random.default_rng(11)
    for ndf in (2, 5, 40):
        z = np.array([chi2_ndf_z(c / ndf, ndf) for c in rng.chisquare(ndf, 20000)])
        assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05, ndf
        assert (z > 3.5).mean() < 1e-3  # the shipped MINOR limit: rare in clean data
    assert math.isnan(chi2_ndf_z(math.nan, 3)) and math.isnan(chi2_ndf_z(1.0, 0))


class SimulatedMonitor:
    """A simulated run decoded and accumulated in-process, observed once per simulated second."""

    def __init__(self, seed: int = 21, config: SourceConfig | None = None) -> None:
        self.source = WindowSource(config or SourceConfig(seed=seed))
        self.decoder = make_decoder("fast", "quartet", 2, self.source.n_channels)
        self.acc = RunAccumulator(self.source.channel_map, self.decoder.size, 9000)
        acceptance = [c.acceptance for c in self.source.channel_map.detectors().channels]
        self.inputs = AlarmInputs(dict(INPUT_DEFAULTS), np.array(acceptance), 0.0)
        self.pvs = {
            "BEAM:ON": Observation("ON"),
            "BEAM:TRIP": Observation("OK"),
            "BEAM:RATE_SP": Observation(self.source.config.muon_rate),
        }
        self.t = 0

    def seconds(self, n: int) -> dict[str, Observation]:
        for _ in range(n):
            self.t += 1
            block = self.source.next_block_of(240).block
            self.acc.add(self.decoder.feed(block))
            obs = self.inputs.observe(
                float(self.t),
                self.decoder.state,
                IngestCounters(blocks_received=self.t),
                self.acc,
                run_result(self.acc, 0.9),
                self.pvs,
            )
        return obs


def test_recent_estimates_see_gate_and_charge_faults() -> None:
    sim = SimulatedMonitor()
    clean = sim.seconds(20)
    assert clean["beam.on_for"].value == 18  # on since the second evaluation
    drift = clean["window_gate.drift"].value
    assert abs(drift) < 5 * 0.01 / math.sqrt(240 * 5)  # 1 % jitter per window, 5 s
    assert 0.98 < clean["detector.yield_min"].value <= clean["detector.yield_max"].value < 1.02
    sim.source.set_fault("frequency_drift", True)  # windows 1 % shorter
    drift = sim.seconds(6)["window_gate.drift"].value
    expected = (1 / 1.01 - 240 * 20e-6) / (1 - 240 * 20e-6) - 1
    assert abs(drift - expected) < 5 * 0.01 / math.sqrt(240 * 5), (drift, expected)
    sim.source.set_fault("frequency_drift", False)
    sim.source.set_fault("charge_asymmetry", True)  # 1e-3
    q = sim.seconds(11)["charge_asymmetry.recent"]
    assert abs(q.value - 1e-3) < 3 * q.error and q.error < 3e-4
    sim.pvs["BEAM:RATE_SP"] = Observation(2e8)  # a new setpoint restarts the beam clock
    assert sim.seconds(1)["beam.on_for"].value == 0


def test_beam_observations_see_differences_corrections_cuts_and_a_stuck_monitor() -> None:
    """A 30 um position difference seen at 10 %/mm by every detector: the difference passes
    its 10 um spec, the regression moves the asymmetry by > 5 raw errors; a monitor beyond
    its range is a cut pattern; a monitor that stops changing is stuck."""
    rules = load_rules()
    beam = BeamlineConfig({"x": {"hc_difference": 0.03}}, {"default": {"x": 0.1}})
    sim = SimulatedMonitor(config=SourceConfig(seed=22, muon_rate=1e10, beamline=beam))
    obs = sim.seconds(40)
    assert abs(obs["beam.x.diff"].value - 0.03) < 3 * obs["beam.x.diff"].error
    assert read(rules["beam_difference_x"], obs).severity == MINOR
    assert read(rules["beam_difference_y"], obs).severity == Severity.NO_ALARM
    assert obs["regression.shift"].value > 5
    assert read(rules["regression_correction"], obs).severity == MINOR
    assert obs["beam.monitors_stuck"].value == 0 and obs["beam.patterns_cut"].value == 0
    assert obs["regression.not_regressed"].value == 0

    column = sim.source.channel_map.names.index("bpm_a_x")
    next_block = sim.source.next_block_of

    def stuck(n: int):
        simulated = next_block(n)
        simulated.block.counts[:, column] = 123456
        return simulated

    sim.source.next_block_of = stuck
    obs = sim.seconds(12)
    assert obs["beam.monitors_stuck"].value == 1
    assert read(rules["beam_monitor_stuck"], obs).severity == MAJOR

    def beyond(n: int):
        simulated = next_block(n)
        simulated.block.counts[::100, column] = 20_000_000  # 20 mm: beyond the 10 mm range
        return simulated

    sim.source.next_block_of = beyond
    assert sim.seconds(2)["beam.patterns_cut"].value > 0


def test_a_saturated_or_unconverged_feedback_loop_is_alarmed_and_an_off_one_is_not() -> None:
    """The charge loop clamped at 300 ppm against a 1000 ppm charge asymmetry: its
    decisions are saturated (MAJOR) and after three of them beyond 3 sigma it has not
    converged (MINOR); the same loop off raises neither."""
    from dataclasses import replace

    from mupnc.monitor.alarms.inputs import feedback_observations
    from mupnc.monitor.analysis.run_analysis import RunAnalysis
    from mupnc.monitor.feedback.loop import FeedbackLoop, LoopSettings, loop_inputs
    from mupnc.sim.source import WindowSource

    rules = load_rules()
    config = SourceConfig(charge_asymmetry=1e-3, seed=6, muon_rate=1e8, intensity_jitter=1e-4)
    source = WindowSource(config)
    analysis = RunAnalysis(settings_of(config), minirun_patterns=10**6)
    settings = LoopSettings(mode="on", patterns=1000, clamp=300.0, converge_actions=3)
    loop, off = (
        FeedbackLoop("charge", settings),
        FeedbackLoop("charge", replace(settings, mode="off")),
    )
    last: list = []
    for _ in range(30):
        analysis.feed(source.next_block_of(960).block)
        actions = loop.update(loop_inputs(analysis.acc, "charge"), 0.0)
        last = actions or last
        for action in actions:
            source.actuators.set("charge", action.after)
    obs = feedback_observations([loop], {"charge": last})
    assert read(rules["feedback_charge_saturated"], obs).severity == MAJOR
    assert read(rules["feedback_charge_not_converged"], obs).severity == MINOR
    quiet = feedback_observations([off], {"charge": last})
    assert read(rules["feedback_charge_saturated"], quiet).severity == Severity.NO_ALARM
    assert read(rules["feedback_charge_not_converged"], quiet).severity == Severity.NO_ALARM


def test_a_stuck_modulation_coil_is_alarmed_within_one_cycle() -> None:
    """coil_3's current shows but the beam does not follow: its first cycle (12 s into the
    run, five 2 s coils) names it dead and the alarm is MAJOR; with every coil working the
    same cycle raises nothing."""
    from mupnc.sim.modulation import ModulationConfig

    rules = load_rules()
    for stuck, severity in ((("coil_3",), MAJOR), ((), Severity.NO_ALARM)):
        modulation = ModulationConfig(enabled=True, period=12.0, stuck=stuck)
        sim = SimulatedMonitor(config=SourceConfig(seed=23, muon_rate=1e10, modulation=modulation))
        obs = sim.seconds(23)  # the first cycle ends at 22 s
        assert obs["modulation.dead_coils"].value == len(stuck)
        assert read(rules["modulation_coil_dead"], obs).severity == severity


def test_a_cycle_whose_coils_do_not_determine_the_beam_is_alarmed() -> None:
    """coil_2 set to move the beam as coil_1 does: y and y' then move with coil_4 alone, the
    first cycle's responses are ill-conditioned and it gives no sensitivities; the alarm is
    MINOR (no coil is dead: that alarm stays quiet); with the default coils nothing."""
    from mupnc.sim.modulation import ModulationConfig, default_response

    rules = load_rules()
    twin = default_response() | {"coil_2": default_response()["coil_1"]}
    for response, severity in ((twin, MINOR), (default_response(), Severity.NO_ALARM)):
        modulation = ModulationConfig(enabled=True, period=12.0, response=response)
        sim = SimulatedMonitor(config=SourceConfig(seed=24, muon_rate=1e10, modulation=modulation))
        obs = sim.seconds(23)  # the first cycle ends at 22 s
        assert obs["modulation.dead_coils"].value == 0
        assert read(rules["modulation_cycle_unusable"], obs).severity == severity
        assert read(rules["modulation_coil_dead"], obs).severity == Severity.NO_ALARM
