"""Feedback loops (pure): the integral law closed around the simulator's actuators."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from support.simulated import settings_of

from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.statistics import RunningStats
from mupnc.monitor.feedback.loop import (
    DEFAULTS,
    FeedbackLoop,
    LoopSettings,
    loop_inputs,
)
from mupnc.sim.actuators import ActuatorLimitError, ActuatorsConfig
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.source import SourceConfig, WindowSource

QUIET_BEAM = dict(muon_rate=1e8, intensity_jitter=1e-4)
"""A source whose charge asymmetry is measured to ~70 ppm per quartet (BCM 1e-4)."""
CHARGE = LoopSettings(mode="on", patterns=1000, max_error=20.0, clamp=3000.0)


def closed_loop(config: SourceConfig, loops: list[FeedbackLoop], windows: int, block: int = 960):
    """Simulate ``windows`` windows in blocks, the loops acting on the simulator's
    actuators after every block as the monitor does after every flush; returns the
    analysis, the actions, and the charge-asymmetry totals at half time."""
    source = WindowSource(config)
    analysis = RunAnalysis(settings_of(config), minirun_patterns=10**6)
    actions, half = [], None
    for start in range(0, windows, block):
        analysis.feed(source.next_block_of(block).block)
        for loop in loops:
            for action in loop.update(loop_inputs(analysis.acc, loop.name), start / 240):
                actions.append(action)
                if loop.settings.mode == "on":
                    source.actuators.set(action.actuator, action.after)
        if half is None and start >= windows // 2:
            half = analysis.acc.run_stats("charge_asymmetry")
    return analysis, actions, half, source


def test_since_is_the_inverse_of_merge():
    rng = np.random.default_rng(1)
    a, b = RunningStats.of(rng.normal(size=(50, 3))), RunningStats.of(rng.normal(size=(70, 3)))
    back = a.merge(b).since(a)
    for k in ("n", "mean", "m2"):
        np.testing.assert_allclose(getattr(back, k), getattr(b, k), rtol=1e-12)


def test_charge_feedback_drives_a_1000_ppm_charge_asymmetry_to_zero():
    """A 1000 ppm charge asymmetry; the true actuator slope is 0.8 of the loop's calibration
    and drifts (0.5 % per hour): the cumulative charge asymmetry over the last half of the
    run is zero within 3 sigma, and every setpoint stays inside the clamp."""
    config = SourceConfig(
        charge_asymmetry=1e-3,
        seed=3,
        actuators=ActuatorsConfig({"charge": {"slope": 0.8}}),
        **QUIET_BEAM,
    )
    loop = FeedbackLoop("charge", CHARGE)
    analysis, actions, half, source = closed_loop(config, [loop], 120 * 960)
    last_half = analysis.acc.run_stats("charge_asymmetry").since(half)
    assert abs(last_half.mean[0]) < 3 * last_half.error[0], (last_half.mean, last_half.error)
    assert last_half.error[0] < 5e-6  # a test that means something: 1000 ppm is 200 sigma
    acted = [a for a in actions if a.acted]
    assert len(acted) >= 3 and all(abs(a.after) <= CHARGE.clamp for a in actions)
    assert source.actuators.setpoints["charge"] == pytest.approx(-1000 / 0.8, rel=0.05)
    # converged: the first decision sees 1000 ppm, the last ones noise
    assert actions[0].value == pytest.approx(1000, rel=0.05)
    assert abs(actions[-1].value) < 3 * actions[-1].error and not loop.not_converged


@pytest.mark.parametrize("mode", ["off", "dry_run"])
def test_feedback_off_or_in_dry_run_changes_no_setpoint(mode):
    config = SourceConfig(charge_asymmetry=1e-3, seed=4, **QUIET_BEAM)
    loop = FeedbackLoop("charge", replace(CHARGE, mode=mode))
    _, actions, _, source = closed_loop(config, [loop], 30 * 960)
    assert source.actuators.setpoints["charge"] == 0.0 and loop.setpoints["charge"] == 0.0
    if mode == "off":
        assert actions == []
    else:  # computed every time from the unchanged setpoint, never applied
        assert len(actions) >= 5 and all(
            a.dry_run and a.reason.startswith("dry run") for a in actions
        )
        assert all(a.after == pytest.approx(-a.value) for a in actions)


def test_position_feedback_drives_a_steered_beam_back():
    """A rotator steering the beam 20 um in x and -5 um in y; the position loop (x and y)
    brings both differences to zero within 3 sigma over the last half."""
    beamline = BeamlineConfig({"x": {"hc_difference": 0.02}, "y": {"hc_difference": -0.005}})
    config = SourceConfig(seed=5, beamline=beamline, **QUIET_BEAM)
    settings = replace(DEFAULTS["position"], mode="on", patterns=1000)
    loop = FeedbackLoop("position", settings)
    _, actions, _, source = closed_loop(config, [loop], 60 * 960)
    assert source.actuators.setpoints["x"] == pytest.approx(-20, abs=1)
    assert source.actuators.setpoints["y"] == pytest.approx(5, abs=1)
    last = actions[-2:]
    assert {a.actuator for a in last} == {"x", "y"}
    assert all(abs(a.value) < 3 * a.error for a in last)


def test_a_loop_held_at_its_clamp_is_saturated_and_does_not_converge():
    config = SourceConfig(charge_asymmetry=1e-3, seed=6, **QUIET_BEAM)
    settings = replace(CHARGE, clamp=300.0, converge_actions=3)
    loop = FeedbackLoop("charge", settings)
    _, actions, _, source = closed_loop(config, [loop], 30 * 960)
    assert source.actuators.setpoints["charge"] == -300.0
    assert actions[-1].saturated and not actions[-1].acted and loop.not_converged


def test_an_actuator_refuses_a_setpoint_beyond_its_limit():
    source = WindowSource(SourceConfig(actuators=ActuatorsConfig({"charge": {"limit": 100.0}})))
    with pytest.raises(ActuatorLimitError, match=r"charge setpoint 150\.0 ppm beyond its limit"):
        source.actuators.set("charge", 150.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (LoopSettings(gain=0.0), "gain: must be > 0, got 0.0"),
        (LoopSettings(gain=-1.0), "gain: must be > 0"),
        (LoopSettings(dead_band=50.0, clamp=20.0), "clamp: 20 moves the input by at most 20"),
        (LoopSettings(mode="maybe"), "mode: must be one of off, dry_run, on"),
    ],
)
def test_unusable_loop_settings_are_named(settings, message):
    assert message in settings.problem("charge")


NO_BPMS = 'mode = "alr"\n[[channels]]\nname = "s"\nrole = "scatter"\nacceptance = 1e-4\n'


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "[feedback.charge]\nenabled = true\ngain = 0.0\n",
            "line 3: [feedback.charge] gain: must be > 0",
        ),
        ("[feedback.charge]\ngain = -0.5\n", "line 2: [feedback.charge] gain: must be > 0"),
        (
            "[feedback.charge]\ndead_band = 50.0\nclamp = 20.0\n",
            "[feedback.charge] clamp: 20 moves the input by at most 20 ppm, not beyond the"
            " dead band 50 ppm",
        ),
        (
            "[feedback.energy]\nenabled = true\n",
            "[feedback.energy]: unknown name 'energy' (known: charge, position)",
        ),
        (
            "[feedback.charge]\nenabled = 'yes'\n",
            "line 2: [feedback.charge] enabled: must be a boolean",
        ),
        ("[feedback.charge]\nwobble = 1\n", "line 2: [feedback.charge] wobble: unknown key"),
        (
            '[detector]\nchannel_map = "map.toml"\n[feedback.position]\nenabled = true\n',
            "[feedback.position]: the beam line measures no x, y",
        ),
        (
            "[actuators.charge]\nslope = 0.0\n",
            "line 2: [actuators.charge] slope: must be a finite non-zero",
        ),
        ("[actuators.z]\nslope = 1.0\n", "[actuators.z]: unknown name 'z' (known: charge, x, y)"),
    ],
)
def test_a_bad_feedback_or_actuator_section_is_refused_in_one_line(
    tmp_path, capsys, section, message
):
    """Through the command line: exit 2, one line naming file, line and key; no run made."""
    from mupnc.cli import main

    (tmp_path / "map.toml").write_text(NO_BPMS)
    path = tmp_path / "run.toml"
    path.write_text(section)
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.raises(SystemExit) as exit_:
        main(["--db", db, "sim", "--config", str(path), "--seconds", "1"])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and str(path) in err and message in err, err
    assert "run 1" not in out


def test_sim_runs_the_charge_loop_and_the_report_gives_its_actions(tmp_path, capsys):
    """``mupnc sim`` closes the configured loop around the simulator's actuators; the report
    (text and JSON) gives the loop's actions and last setpoint."""
    import json

    from mupnc.cli import main

    path = tmp_path / "fb.toml"
    path.write_text(
        "[beam]\ncharge_asymmetry = 1e-3\nintensity_jitter = 1e-4\n"
        "[feedback.charge]\nenabled = true\npatterns = 1000\nclamp = 3000.0\n"
    )
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    assert main(["--db", db, "sim", "--config", str(path), "--seconds", "100", "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "report", "1", "--json"]) == 0
    feedback = json.loads(capsys.readouterr().out)["feedback"]["charge"]
    assert feedback["mode"] == "on" and feedback["actions"] >= 3 and not feedback["saturated"]
    assert feedback["last_setpoint"] == pytest.approx(-1000, abs=30)
    assert main(["--db", db, "report", "1"]) == 0
    assert "feedback charge: on, " in capsys.readouterr().out


def test_a_restarted_monitor_resumes_each_loop_at_its_last_setpoint(tmp_path):
    """The loops' state lives in the database: a new service for the same run (a
    restarted monitor) starts at the setpoint the last decision left, with its count of
    actions, and its first decision continues from there (no jump back to 0)."""
    from mupnc.db.session import make_engine
    from mupnc.monitor.feedback.service import FeedbackService
    from mupnc.offline import simulated_setpoints
    from mupnc.runs import new_run

    db = f"sqlite:///{tmp_path / 'resume.db'}"
    config = SourceConfig(charge_asymmetry=1e-3, seed=8, **QUIET_BEAM)
    run = new_run(db, config, source="sim", feedback={"charge": CHARGE})
    engine = make_engine(db)
    source = WindowSource(config)
    analysis = RunAnalysis(settings_of(config, run), minirun_patterns=10**6)

    def run_for(service: FeedbackService, blocks: int) -> None:
        for _ in range(blocks):
            analysis.feed(source.next_block_of(960).block)
            service.update(analysis.acc)

    first = FeedbackService(engine, run, simulated_setpoints(source))
    run_for(first, 25)
    left = dict(first.loops["charge"].setpoints)
    assert left["charge"] < -900 and first.loops["charge"].actions >= 3

    again = FeedbackService(engine, run, simulated_setpoints(source))
    assert again.loops["charge"].setpoints == left
    assert again.loops["charge"].actions == first.loops["charge"].actions
    run_for(again, 10)
    resumed = again.last["charge"][0]
    assert resumed.before == left["charge"] and abs(resumed.value) < 5 * resumed.error

    again.set_mode("charge", "dry_run")  # a switch at run time is stored and resumed too
    third = FeedbackService(engine, run, simulated_setpoints(source))
    assert third.loops["charge"].settings.mode == "dry_run"
    assert third.loops["charge"].setpoints == again.loops["charge"].setpoints
    engine.dispose()
