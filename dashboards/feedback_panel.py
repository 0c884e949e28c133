"""The shifter page's feedback panel (Bokeh): each loop's state, its last decisions and the
setpoint history (:mod:`mupnc.monitor.feedback`; the charge loop's inputs are drawn on the
beam charge strip chart, :class:`mupnc.dashboards.panels.BeamStrip`).

A run without feedback gets one short line.  Strings from the database (loop names,
reasons) reach the page escaped or as table cells.
"""

from __future__ import annotations

import html
from collections import deque
from collections.abc import Sequence

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import (
    ColumnDataSource,
    Div,
    Range1d,
    Span,
    StringFormatter,
    TableColumn,
)
from bokeh.plotting import figure

from mupnc.dashboards import columns as cols
from mupnc.dashboards.display import FEEDBACK_MODES, format_setpoint, format_with_error, y_range
from mupnc.dashboards.records import (
    FEEDBACK_ACTUATORS,
    FEEDBACK_INPUT_UNITS,
    SETPOINT_UNITS,
    FeedbackDecision,
    FeedbackLoop,
    RunInfo,
)
from mupnc.dashboards.tables import live_table

ROLLOVER = 20000
"""Points kept per setpoint source (a decision every few seconds at the most)."""
NONE_CONFIGURED = "feedback: none configured for this run"
TABLE_HEADER, TABLE_ROW = 30, 26
ACTUATOR_COLOURS = {"charge": "#1f77b4", "x": "#1f77b4", "y": "#ff7f0e"}
BADGE = "display:inline-block;padding:0 6px;margin:0 4px;border-radius:4px;color:white;"
PLOT_WIDTH, PLOT_HEIGHT = 420, 260
PLOTS = {
    "charge": ("Charge feedback setpoint", "charge setpoint"),
    "position": ("Position feedback setpoints", "x, y setpoint"),
}
"""Loop -> its setpoint plot's title and y-axis label (before the unit)."""


def _empty_setpoints() -> dict[str, np.ndarray | list]:
    return {k: [] if k == "colour" else np.empty(0) for k in cols.SETPOINT_KEYS}


def _badge(text: str, colour: str) -> str:
    return f"<span style='{BADGE}background:{colour}'>{html.escape(text)}</span>"


def _decision_html(loop: FeedbackLoop, decision: FeedbackDecision) -> str:
    unit = FEEDBACK_INPUT_UNITS.get(decision.loop, "?")
    setpoint_unit = SETPOINT_UNITS.get(decision.actuator, "?")
    clamp = "" if loop.clamp is None else f" (clamp ±{loop.clamp:g} {setpoint_unit})"
    state = "would set" if decision.dry_run else "setpoint"
    setpoint = format_setpoint(decision.after)
    return (
        f"last input {html.escape(decision.actuator)}: "
        f"<b>{format_with_error(decision.value, decision.error, unit)}</b>"
        f" → {state} {setpoint} {setpoint_unit}{clamp} — <i>{html.escape(decision.reason)}</i>"
    )


def loop_html(loop: FeedbackLoop) -> str:
    """One loop: name, mode badge (a note if switched at run time), actions applied in
    decisions, SATURATED if its last decision was held at the clamp, then per actuator the
    last decision's input, setpoint and reason (or that none came yet)."""
    mode, note = cols.loop_mode(loop)
    label, colour = FEEDBACK_MODES[mode]
    head = f"<b>{html.escape(loop.loop)} loop</b>{_badge(label, colour)}"
    if note:
        head += f"<i>({html.escape(note)})</i> "
    head += f"{loop.actions:,} actions applied in {loop.decisions:,} decisions"
    if any(d.saturated for d in loop.last):
        head += _badge("SATURATED", "#c00000")
    if not loop.last:
        every = "" if loop.patterns is None else f" (one every {loop.patterns:,} good patterns)"
        return head + f"<br>&nbsp;&nbsp;no decision yet{every}"
    return head + "".join(f"<br>&nbsp;&nbsp;{_decision_html(loop, d)}" for d in loop.last)


def feedback_html(loops: Sequence[FeedbackLoop]) -> str:
    """The loops' states, or one short line when the run has none."""
    if not loops:
        return f"<span style='color:#555'>{NONE_CONFIGURED}</span>"
    return "<b>Feedback</b><br>" + "<br>".join(loop_html(loop) for loop in loops)


class SetpointPlot:
    """One loop's setpoints versus time since the run start: a step line per actuator (the
    setpoint it holds), a marker per decision (hollow: a dry run's proposal; red:
    saturated) and the clamp as dashed lines."""

    def __init__(self, loop: str) -> None:
        self.loop = loop
        self.actuators = FEEDBACK_ACTUATORS[loop]
        unit = SETPOINT_UNITS[self.actuators[0]]
        title, axis = PLOTS[loop]
        self.y_range = Range1d(-1, 1, name=f"feedback_{loop}_y_range")
        self.plot = figure(
            title=f"{title} (dashed: clamp)",
            x_axis_label="time since run start (s)",
            y_axis_label=f"{axis} ({unit})",
            y_range=self.y_range,
            width=PLOT_WIDTH,
            height=PLOT_HEIGHT,
            tools="pan,wheel_zoom,reset,save",
            name=f"feedback_{loop}_plot",
            visible=False,
        )
        self.sources: dict[str, ColumnDataSource] = {}
        for actuator in self.actuators:
            source = ColumnDataSource(_empty_setpoints(), name=f"feedback_setpoint_{actuator}")
            colour = ACTUATOR_COLOURS[actuator]
            legend = {"legend_label": actuator} if len(self.actuators) > 1 else {}
            self.plot.step("x", "y", source=source, mode="after", color=colour, **legend)
            self.plot.scatter(
                "x", "proposed", source=source, size=7, line_color=colour,
                fill_color="colour", **legend,
            )  # fmt: skip
            self.sources[actuator] = source
        if len(self.actuators) > 1:
            self.plot.legend.location = "top_left"
            self.plot.legend.orientation = "horizontal"
        self.clamps = [
            Span(
                location=0,
                dimension="width",
                line_color="#c00000",
                line_dash="dashed",
                visible=False,
                name=f"feedback_{loop}_clamp_{side}",
            )
            for side in ("low", "high")
        ]
        for span in self.clamps:
            self.plot.add_layout(span)
        self.plot.add_layout(Span(location=0, dimension="width", line_color="black"))
        self.started: set[str] = set()
        """Actuators with points (the first decision shown adds the setpoint at t = 0)."""
        self.clamp: float | None = None

    def clear(self) -> None:
        for source in self.sources.values():
            source.data = _empty_setpoints()
        self.started.clear()
        self._fit()

    def apply(
        self,
        run: RunInfo,
        loop: FeedbackLoop | None,
        decisions: Sequence[FeedbackDecision],
        shown: bool,
    ) -> None:
        """Stream the new ``decisions`` of this plot's loop; ``shown``: the panel shows its
        details (the plot then shows when the run has the loop)."""
        self.plot.visible = shown and loop is not None
        clamp = None if loop is None else loop.clamp
        for span, sign in zip(self.clamps, (-1, 1), strict=True):
            span.visible = clamp is not None
            span.location = 0 if clamp is None else sign * clamp
        mine = [d for d in decisions if d.loop == self.loop]
        changed = clamp != self.clamp
        self.clamp = clamp
        for actuator, source in self.sources.items():
            new = cols.setpoint_columns(mine, run.start, actuator, actuator not in self.started)
            if len(new["x"]):
                source.stream(new, rollover=ROLLOVER)
                self.started.add(actuator)
                changed = True
        if changed:  # else the shifter's own zoom stays
            self._fit()

    def _fit(self) -> None:
        """A y range holding every setpoint, proposal and the clamp."""
        values = np.concatenate(
            [
                np.asarray(source.data[key], dtype=float)
                for source in self.sources.values()
                for key in ("y", "proposed")
            ]
        )
        lines = [] if self.clamp is None else [-self.clamp, self.clamp]
        start, end = y_range(values, values, lines)
        self.y_range.update(start=start, end=end)


class FeedbackPanel:
    """The loops' states beside a setpoint plot per loop, the last decisions below; one
    short line for a run without feedback (or with its loops off and no decision)."""

    def __init__(self) -> None:
        self.state = Div(
            name="feedback_state", text="feedback: no run yet", sizing_mode="stretch_width"
        )
        self.recent: deque[FeedbackDecision] = deque(maxlen=cols.DECISION_ROWS)
        self.source = ColumnDataSource(cols.decision_columns(()), name="feedback_decisions_source")
        state = StringFormatter(background_color="colour")
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(field="time", title="time (UTC)", width=80),
                TableColumn(field="loop", title="loop", width=60),
                TableColumn(field="actuator", title="actuator", width=60),
                TableColumn(field="input", title="input ± error", width=140),
                TableColumn(field="setpoint", title="setpoint before → after", width=170),
                TableColumn(field="state", title="state", formatter=state, width=150),
                TableColumn(field="reason", title="reason", width=320),
            ],
            height=TABLE_HEADER + TABLE_ROW,
            sizing_mode="stretch_width",
            index_position=None,
            name="feedback_table",
        )
        self.plots = {loop: SetpointPlot(loop) for loop in FEEDBACK_ACTUATORS}
        self.details = column(
            Div(text="<b>Last feedback decisions</b> (newest first)"),
            self.table,
            sizing_mode="stretch_width",
            visible=False,
            name="feedback_details",
        )
        self.layout = column(
            row(
                self.state,
                *(plot.plot for plot in self.plots.values()),
                sizing_mode="stretch_width",
            ),
            self.details,
            sizing_mode="stretch_width",
        )
        self.shown: tuple[FeedbackLoop, ...] | None = None

    def apply(
        self,
        run: RunInfo,
        loops: tuple[FeedbackLoop, ...],
        decisions: Sequence[FeedbackDecision],
        reset: bool,
    ) -> None:
        """Reset for a new run, show the loops' states and the new ``decisions``."""
        if reset:
            self.recent.clear()
            for plot in self.plots.values():
                plot.clear()
        if loops != self.shown:
            self.shown = loops
            self.state.text = feedback_html(loops)
        if reset or decisions:
            self.recent.extend(decisions)
            self.source.data = cols.decision_columns(self.recent)
            self.table.height = TABLE_HEADER + TABLE_ROW * max(len(self.recent), 1)
        active = any(cols.loop_mode(loop)[0] != "off" for loop in loops)
        self.details.visible = active or bool(self.recent)
        by_loop = {loop.loop: loop for loop in loops}
        for name, plot in self.plots.items():
            plot.apply(run, by_loop.get(name), decisions, self.details.visible)
