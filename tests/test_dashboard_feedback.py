"""The feedback panel of the shifter page: pure columns, the feed's decisions, and the page of
a run made by ``mupnc sim`` with a charge feedback loop (no browser)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent
from dashboard_data import T0, add_snapshots, by_name, new_run, shifter_page
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from support.cli import sqlite_with_schema

from mupnc.dashboards.columns import (
    DECISION_COLOURS,
    SETPOINT_MARKERS,
    charge_input_size,
    decision_columns,
    decision_state,
    feedback_input_columns,
    loop_mode,
    setpoint_columns,
)
from mupnc.dashboards.display import PERCENT, PPB, PPM, format_setpoint, format_with_error
from mupnc.dashboards.feed import Feed
from mupnc.dashboards.feedback_panel import NONE_CONFIGURED, feedback_html
from mupnc.dashboards.live import make_document
from mupnc.dashboards.records import (
    FeedbackDecision,
    FeedbackLoop,
)
from mupnc.db.models import FeedbackAction, FeedbackModeChange
from mupnc.db.session import make_engine, transaction

SIM_CONFIG = """\
[beam]
charge_asymmetry = 1e-3
intensity_jitter = 1e-4
[feedback.charge]
enabled = true
patterns = 1000
clamp = 3000.0
"""
"""The brief's run: a 1000 ppm charge asymmetry, the charge loop on, clamp 3000 ppm."""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_with_schema(tmp_path / "feedback.db")


@pytest.fixture
def engine(db_url: str):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def feed(db_url: str):
    feed = Feed(db_url)
    yield feed
    feed.stop()


def decision(t: float, **kw) -> FeedbackDecision:
    """A charge-loop decision at ``t`` s after T0 (fields overridden by ``kw``)."""
    fields = dict(
        loop="charge",
        actuator="charge",
        patterns=1000,
        window_end=int(1000 * t),
        value=10.0,
        error=2.0,
        before=0.0,
        after=-10.0,
        acted=True,
        saturated=False,
        dry_run=False,
        reason="corrected +10 ± 2 ppm",
    )
    return FeedbackDecision(T0 + timedelta(seconds=t), **(fields | kw))


def add_decisions(engine: Engine, run: int, decisions: list[FeedbackDecision]) -> None:
    with transaction(engine) as session:
        session.add_all(
            FeedbackAction(
                run=run,
                time=d.time,
                loop=d.loop,
                actuator=d.actuator,
                patterns=d.patterns,
                window_end=d.window_end,
                value=d.value,
                error=d.error,
                before=d.before,
                after=d.after,
                acted=d.acted,
                saturated=d.saturated,
                dry_run=d.dry_run,
                reason=d.reason,
            )
            for d in decisions
        )


# --- pure ----------------------------------------------------------------------------------------


def test_numbers_with_errors_and_setpoints_read_well() -> None:
    assert format_with_error(998.787, 2.1967, "ppm") == "+998.8 ± 2.2 ppm"
    assert format_with_error(-0.1234, 0.047, "µm") == "-0.123 ± 0.047 µm"
    # a zero error gives no decimal place to round to: undefined, no fake precision
    assert format_with_error(12.0, 0.0, "ppm") == "undefined"
    assert format_with_error(None, 1.0, "ppm") == "undefined"
    assert format_with_error(float("nan"), 1.0, "ppm") == "undefined"
    assert format_setpoint(-998.787) == "-998.8" and format_setpoint(3000.0) == "+3000"
    assert format_setpoint(1.23456) == "+1.235" and format_setpoint(0.0) == "0"
    assert format_setpoint(0.001234) == "+0.0012"


def test_decision_columns_newest_first_with_units_and_states() -> None:
    decisions = [
        decision(1, value=998.787, error=2.2, before=0.0, after=-998.787),
        decision(2, dry_run=True, before=-998.787, after=-1010.0, reason="dry run: corrected"),
        decision(3, value=5000.0, before=-1010.0, after=-3000.0, saturated=True),
        decision(4, acted=False, after=-3000.0, before=-3000.0, error=50.0, reason="error 50"),
        decision(5, loop="position", actuator="x", value=0.12, error=0.047, before=1, after=0.9),
        decision(6, value=None, error=None, acted=False, reason="input undefined"),
    ]
    table = decision_columns(decisions)
    assert table["time"] == ["12:00:06", "12:00:05", "12:00:04", "12:00:03", "12:00:02", "12:00:01"]
    assert table["loop"][:2] == ["charge", "position"] and table["actuator"][1] == "x"
    assert table["input"][-1] == "+998.8 ± 2.2 ppm"
    assert table["input"][1] == "+0.120 ± 0.047 µm" and table["input"][0] == "undefined"
    assert table["value"][-1] == 998.787 and np.isnan(table["value"][0])
    assert table["setpoint"][-1] == "0 → -998.8 ppm"
    assert table["setpoint"][1] == "+1.000 → +0.9000 µm"
    assert table["state"] == [
        "no change",
        "applied",
        "no change",
        "applied · SATURATED",
        "dry run",
        "applied",
    ]
    assert table["colour"][3] == DECISION_COLOURS["saturated"]
    assert table["colour"][4] == DECISION_COLOURS["dry run"] != DECISION_COLOURS["applied"]
    assert table["reason"][0] == "input undefined"
    assert decision_state(decision(1, dry_run=True, acted=False, after=0.0)) == (
        "dry run · no change",
        DECISION_COLOURS["dry run"],
    )
    assert decision_state(decision(1, dry_run=True, saturated=True)) == (
        "dry run · SATURATED",
        DECISION_COLOURS["saturated"],
    )
    many = decision_columns([decision(t) for t in range(1, 13)])
    assert many["time"][0] == "12:00:12" and many["time"][-1] == "12:00:03"  # the newest ten
    assert all(len(v) == 10 for v in many.values())
    assert all(v == [] for v in decision_columns([]).values())


def test_setpoint_history_holds_what_the_actuator_holds() -> None:
    decisions = [
        decision(2, before=0.0, after=-998.8),
        decision(4, before=-998.8, after=-1005.0, dry_run=True),  # computed, not applied
        decision(6, before=-998.8, after=-3000.0, saturated=True),
        decision(6, loop="position", actuator="x", before=0.0, after=1.0),
    ]
    first = setpoint_columns(decisions, T0, "charge", leading=True)
    np.testing.assert_allclose(first["x"], [0, 2, 4, 6])
    np.testing.assert_allclose(first["y"], [0, -998.8, -998.8, -3000])
    np.testing.assert_allclose(first["proposed"], [0, -998.8, -1005, -3000])
    assert first["colour"] == [
        SETPOINT_MARKERS["applied"],
        SETPOINT_MARKERS["applied"],
        SETPOINT_MARKERS["dry run"],
        SETPOINT_MARKERS["saturated"],
    ]
    later = setpoint_columns(decisions, T0, "charge", leading=False)
    np.testing.assert_allclose(later["x"], [2, 4, 6])
    x = setpoint_columns(decisions, T0, "x", leading=True)
    np.testing.assert_allclose(x["x"], [0, 6]) and np.testing.assert_allclose(x["y"], [0, 1])
    assert len(setpoint_columns(decisions, T0, "y", leading=True)["x"]) == 0


def test_the_charge_inputs_in_the_unit_of_the_strip_chart() -> None:
    decisions = [
        decision(1, value=998.8, error=2.2),
        decision(2, value=None, error=None),
        decision(3, loop="position", actuator="x", value=0.5, error=0.1),
        decision(4, value=-3.0, error=2.0),
    ]
    ppm = feedback_input_columns(decisions, T0, PPM)
    np.testing.assert_allclose(ppm["x"], [1, 4])
    np.testing.assert_allclose(ppm["y"], [998.8, -3])
    np.testing.assert_allclose(ppm["lo"], [996.6, -5])
    np.testing.assert_allclose(ppm["hi"], [1001, -1])
    np.testing.assert_allclose(feedback_input_columns(decisions, T0, PPB)["y"], [998800, -3000])
    np.testing.assert_allclose(
        feedback_input_columns(decisions, T0, PERCENT)["hi"], [0.1001, -1e-4]
    )
    assert all(len(v) == 0 for v in feedback_input_columns([], T0, PPM).values())
    assert charge_input_size(decisions) == pytest.approx(3e-6)  # the newest: |-3| > 2 ppm
    assert charge_input_size(decisions[:3]) == pytest.approx(998.8e-6)
    assert charge_input_size([decision(1, value=0.5, error=2.0)]) == pytest.approx(2e-6)
    assert charge_input_size(decisions[1:3]) is None and charge_input_size([]) is None


def test_the_mode_shown_follows_the_last_decision() -> None:
    def loop(mode, *last):
        return FeedbackLoop("charge", mode, 3000.0, 1000, 0, len(last), tuple(last))

    assert loop_mode(loop("on")) == ("on", "")
    assert loop_mode(loop("dry_run")) == ("dry_run", "")
    assert loop_mode(loop("off")) == ("off", "")
    assert loop_mode(loop("on", decision(1))) == ("on", "")
    assert loop_mode(loop(None, decision(1))) == ("on", "not in the run configuration")
    assert loop_mode(loop(None, decision(1, dry_run=True))) == (
        "dry_run",
        "not in the run configuration",
    )
    assert loop_mode(loop("bogus")) == ("off", "unknown mode 'bogus'")


def test_the_state_lines_badges_and_escaping() -> None:
    assert feedback_html(()) == f"<span style='color:#555'>{NONE_CONFIGURED}</span>"
    waiting = FeedbackLoop("charge", "on", 3000.0, 1000, 0, 0)
    text = feedback_html((waiting,))
    assert ">ON</span>" in text and "0 actions applied in 0 decisions" in text
    assert "no decision yet (one every 1,000 good patterns)" in text
    held = decision(3, value=5000.0, error=20.0, after=-3000.0, saturated=True, reason="<b>x")
    saturated = FeedbackLoop("charge", "on", 3000.0, 1000, 4, 5, (held,))
    position = FeedbackLoop(
        "position",
        "dry_run",
        50.0,
        50000,
        0,
        2,
        (
            decision(3, loop="position", actuator="x", value=0.12, error=0.047, dry_run=True),
            decision(3, loop="position", actuator="y", value=-0.3, error=0.05, dry_run=True),
        ),
    )
    text = feedback_html((saturated, position))
    assert "4 actions applied in 5 decisions" in text and ">SATURATED</span>" in text
    assert "+5000 ± 20 ppm</b> → setpoint -3000 ppm (clamp ±3000 ppm)" in text
    assert "&lt;b&gt;x" in text and "<b>x" not in text
    assert ">DRY RUN</span>" in text and text.count("SATURATED") == 1
    assert "last input x: <b>+0.120 ± 0.047 µm</b> → would set -10.00 µm (clamp ±50 µm)" in text
    assert "last input y: <b>-0.300 ± 0.050 µm</b>" in text


# --- the feed and the page -----------------------------------------------------------------------


def test_a_run_without_feedback_gets_one_line(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    assert by_name(doc, "feedback_state").text == feedback_html(())
    assert NONE_CONFIGURED == "feedback: none configured for this run"
    assert not by_name(doc, "feedback_details").visible
    assert not by_name(doc, "feedback_charge_plot").visible
    assert not by_name(doc, "feedback_position_plot").visible
    assert len(by_name(doc, "feedback_decisions_source").data["time"]) == 0
    assert not by_name(doc, "charge_strip_plot").legend[0].visible
    # a loop configured off, that never decided: its line, OFF, and no table or plot
    new_run(engine, feedback={"charge": {"mode": "off", "clamp": 2000.0, "patterns": 10000}})
    feed.poll()
    (tick,) = doc.session_callbacks
    tick.callback()
    state = by_name(doc, "feedback_state").text
    assert "<b>charge loop</b>" in state and ">OFF</span>" in state and NONE_CONFIGURED not in state
    assert not by_name(doc, "feedback_details").visible
    assert not by_name(doc, "feedback_charge_plot").visible


def test_decisions_stream_into_a_session_and_reset_with_the_run(engine: Engine, feed: Feed) -> None:
    run = new_run(
        engine,
        feedback={
            "charge": {"mode": "dry_run", "clamp": 500.0, "patterns": 1000},
            "position": {"mode": "on", "clamp": 50.0, "patterns": 50000},
        },
    )
    add_snapshots(engine, run, [1, 2, 3])
    add_decisions(engine, run, [decision(2, value=400.0, dry_run=True, after=-400.0)])
    feed.attach("a")
    feed.poll()
    first = feed.since("a")
    assert [d.value for d in first.decisions] == [400.0]
    assert [(loop.loop, loop.mode, loop.clamp) for loop in first.feedback] == [
        ("charge", "dry_run", 500.0),
        ("position", "on", 50.0),
    ]
    assert first.feedback[0].decisions == 1 and first.feedback[0].actions == 0  # a dry run
    doc = Document()
    make_document(doc, feed)
    state = by_name(doc, "feedback_state").text
    assert ">DRY RUN</span>" in state and ">ON</span>" in state and "SATURATED" not in state
    assert "no decision yet (one every 50,000 good patterns)" in state
    assert by_name(doc, "feedback_details").visible
    assert by_name(doc, "feedback_position_plot").visible
    charge = by_name(doc, "feedback_setpoint_charge")
    np.testing.assert_allclose(charge.data["y"], [0, 0])  # a dry run applies nothing
    np.testing.assert_allclose(charge.data["proposed"], [0, -400])
    clamp = by_name(doc, "feedback_charge_clamp_high")
    assert clamp.visible and clamp.location == 500.0
    assert by_name(doc, "feedback_charge_clamp_low").location == -500.0

    (tick,) = doc.session_callbacks
    events = []
    doc.on_change(events.append)
    add_snapshots(engine, run, [4, 5])
    add_decisions(
        engine,
        run,
        [
            decision(4, value=900.0, before=0.0, after=-500.0, saturated=True, window_end=4000),
            decision(5, loop="position", actuator="x", value=0.5, error=0.1, before=0.0,
                     after=-0.5, window_end=5000),
            decision(5, loop="position", actuator="y", value=-0.2, error=0.1, before=0.0,
                     after=0.2, window_end=5000),
        ],
    )  # fmt: skip
    with transaction(engine) as session:  # `mupnc feedback charge on` during the run
        session.add(FeedbackModeChange(run=run, time=T0, loop="charge", mode="on"))
    feed.poll()
    assert [d.window_end for d in feed.since("a").decisions] == [4000, 5000, 5000]
    tick.callback()
    streamed = {e.model.name for e in events if isinstance(e, ColumnsStreamedEvent)}
    assert {
        "feedback_setpoint_charge",
        "feedback_setpoint_x",
        "feedback_setpoint_y",
        "feedback_input_source",
    } <= streamed
    np.testing.assert_allclose(charge.data["x"], [0, 2, 4])
    np.testing.assert_allclose(charge.data["y"], [0, 0, -500])
    np.testing.assert_allclose(by_name(doc, "feedback_setpoint_y").data["y"], [0, 0.2])
    state = by_name(doc, "feedback_state").text
    assert ">SATURATED</span>" in state and "1 actions applied in 2 decisions" in state
    assert state.count(">ON</span>") == 2 and ">DRY RUN</span>" not in state  # switched on
    assert "2 actions applied in 1 decisions" in state  # x and y, one window
    table = by_name(doc, "feedback_decisions_source").data
    assert table["actuator"] == ["y", "x", "charge", "charge"]
    assert table["state"][2] == "applied · SATURATED"
    inputs = by_name(doc, "feedback_input_source").data
    np.testing.assert_allclose(inputs["y"], [400, 900])  # the charge loop's only
    assert by_name(doc, "charge_strip_plot").legend[0].visible
    y = by_name(doc, "feedback_position_y_range")
    assert y.start <= -50 and y.end >= 50

    assert by_name(doc, "charge_strip_plot").yaxis[0].axis_label == "A_Q (ppm)"

    # a new run without feedback: one line, nothing left of the old run's decisions
    other = new_run(engine)
    add_snapshots(engine, other, [1])
    feed.poll()
    tick.callback()
    assert by_name(doc, "feedback_state").text == feedback_html(())
    assert not by_name(doc, "feedback_details").visible
    assert len(charge.data["x"]) == 0
    assert len(by_name(doc, "feedback_input_source").data["x"]) == 0
    assert by_name(doc, "feedback_decisions_source").data["time"] == []
    assert not by_name(doc, "charge_strip_plot").legend[0].visible
    assert by_name(doc, "charge_strip_plot").yaxis[0].axis_label == "A_Q (ppb)"  # 0.1 ppm


def test_a_large_feedback_input_turns_the_charge_axis_to_ppm(engine: Engine, feed: Feed) -> None:
    """A_Q of 0.1 ppm reads in ppb; a 400 ppm input beside it turns the plot to ppm, the
    running A_Q with it."""
    run = new_run(engine, feedback={"charge": {"mode": "on", "clamp": 3000.0}})
    add_snapshots(engine, run, [1, 2, 3])
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    strip, beam = by_name(doc, "charge_strip_plot"), by_name(doc, "beam_source")
    assert strip.yaxis[0].axis_label == "A_Q (ppb)"
    in_ppb = np.asarray(beam.data["charge"])
    (tick,) = doc.session_callbacks
    add_decisions(engine, run, [decision(3.5, value=400.0, error=2.0, after=-400.0)])
    feed.poll()
    tick.callback()
    assert strip.yaxis[0].axis_label == "A_Q (ppm)"
    np.testing.assert_allclose(beam.data["charge"], in_ppb * 1e-3)
    np.testing.assert_allclose(by_name(doc, "feedback_input_source").data["y"], [400])
    add_snapshots(engine, run, [4, 5])  # the 400 ppm input stays the newest: ppm stays
    feed.poll()
    tick.callback()
    assert strip.yaxis[0].axis_label == "A_Q (ppm)" and len(beam.data["charge"]) == 5
    # driven to zero: a 0.01 ± 0.1 ppm input beside 0.1 ppm of A_Q reads in ppb again
    add_decisions(engine, run, [decision(5.5, value=0.01, error=0.1, before=-400, after=-400)])
    feed.poll()
    tick.callback()
    assert strip.yaxis[0].axis_label == "A_Q (ppb)"
    inputs = by_name(doc, "feedback_input_source").data
    np.testing.assert_allclose(inputs["y"], [400_000, 10])
    np.testing.assert_allclose(inputs["hi"], [402_000, 110])


def test_a_simulated_charge_feedback_run_on_the_shifter_page(tmp_path: Path) -> None:
    """``mupnc sim`` with the charge loop on a 1000 ppm charge asymmetry: the loop ON with
    its actions, the first decision's input near 1000 ppm and the later ones near zero, the
    setpoint driven to about -1000 ppm within the clamp, the inputs on the charge strip."""
    from mupnc.cli import main
    from mupnc.db.summary import run_summary

    db = f"sqlite:///{tmp_path / 'fb.db'}"
    config = tmp_path / "feedback.toml"
    config.write_text(SIM_CONFIG)
    sim = ["sim", "--config", str(config), "--seconds", "120", "--seed", "4"]
    assert main(["--db", db, *sim]) == 0
    engine = make_engine(db)
    with Session(engine) as session:
        report = run_summary(session, 1)["feedback"]["charge"]
    engine.dispose()
    doc = shifter_page(db)

    state = by_name(doc, "feedback_state").text
    assert "<b>charge loop</b>" in state and ">ON</span>" in state and "position" not in state
    counts = re.search(r"(\d+) actions applied in (\d+) decisions", state)
    assert counts, state
    actions, decisions = int(counts[1]), int(counts[2])
    assert actions >= 3 and (actions, decisions) == (report["actions"], report["decisions"])
    assert "(clamp ±3000 ppm)" in state and "SATURATED" not in state

    table = by_name(doc, "feedback_decisions_source").data
    assert len(table["time"]) == min(decisions, 10)
    first, error = table["value"][-1], table["error"][-1]  # newest first
    assert abs(first - 1000) < 5 * error and 0 < error < 10, (first, error)
    assert table["input"][-1].endswith(" ppm") and table["setpoint"][-1].startswith("0 → -")
    later = np.asarray(table["value"][:-1])
    assert (np.abs(later) < 0.03 * first).all(), later  # driven to zero
    assert set(table["state"]) == {"applied"} and set(table["loop"]) == {"charge"}

    setpoints = by_name(doc, "feedback_setpoint_charge").data
    x, y = np.asarray(setpoints["x"]), np.asarray(setpoints["y"])
    assert len(x) == decisions + 1 and x[0] == 0 and y[0] == 0 and (np.diff(x) > 0).all()
    assert abs(y[-1] + 1000) < 30 and y[-1] == pytest.approx(report["last_setpoint"])
    plot = by_name(doc, "feedback_charge_plot")
    assert plot.visible and not by_name(doc, "feedback_position_plot").visible
    assert plot.yaxis[0].axis_label == "charge setpoint (ppm)"
    assert plot.xaxis[0].axis_label == "time since run start (s)"
    for side, sign in (("low", -1), ("high", 1)):
        clamp = by_name(doc, f"feedback_charge_clamp_{side}")
        assert clamp.visible and clamp.location == sign * 3000.0 and clamp.line_dash == [6]
    y_range = by_name(doc, "feedback_charge_y_range")
    assert y_range.start < -3000 and y_range.end > 3000

    inputs = by_name(doc, "feedback_input_source").data
    np.testing.assert_allclose(inputs["y"], table["value"][::-1])  # ppm: the strip's unit
    np.testing.assert_allclose(np.asarray(inputs["x"]), x[1:])
    assert (np.asarray(inputs["lo"]) < inputs["y"]).all() and (inputs["y"] < inputs["hi"]).all()
    strip = by_name(doc, "charge_strip_plot")
    assert strip.yaxis[0].axis_label == "A_Q (ppm)" and strip.legend[0].visible
    assert strip.xaxis[0].axis_label == "time since run start (s)"
    assert by_name(doc, "feedback_details").visible
