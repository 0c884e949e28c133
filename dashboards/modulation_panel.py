"""The shifter page's beam-modulation panel (Bokeh): the cycles' status, the combined
sensitivities with errors (newest usable cycle and the run's) and regression versus
dithering, as a table and as the per-cycle differences in their errors
(:mod:`mupnc.monitor.analysis.modulation`).

A run without a modulation cycle (yet) gets one short line.  Strings from the database
(coil names, why a cycle was refused) reach the page escaped.
"""

from __future__ import annotations

import html

from bokeh.layouts import column, row
from bokeh.models import (
    AdaptiveTicker,
    ColumnDataSource,
    Div,
    NumberFormatter,
    Range1d,
    Span,
    StringFormatter,
    TableColumn,
)
from bokeh.plotting import figure

from mupnc.dashboards import columns as cols
from mupnc.dashboards.records import Modulation
from mupnc.dashboards.tables import live_table

NO_CYCLE = "beam modulation: no cycle in this run"
BADGE = "display:inline-block;padding:0 6px;margin:0 4px;border-radius:4px;color:white;"
VARIABLE_COLOURS = {"x": "#1f77b4", "y": "#ff7f0e", "xp": "#2ca02c", "yp": "#9467bd",
                    "dpp": "#8c564b"}  # fmt: skip
PULL_LIMIT = 3.0
"""The dashed band of the difference plot: regression and dithering agree within 3 sigma."""


def _badge(text: str, colour: str) -> str:
    return f"<span style='{BADGE}background:{colour}'>{html.escape(text)}</span>"


def modulation_html(modulation: Modulation | None) -> str:
    """The cycles' status: how many and how many usable, the newest cycle's minirun, coils
    fitted and windows, dead coils (red), and why it gave no sensitivities (amber)."""
    if modulation is None:
        return f"<span style='color:#555'>{NO_CYCLE}</span>"
    head = "<b>Beam modulation</b> "
    usable = sum(c.usable for c in modulation.cycles)
    latest = modulation.cycles[-1]
    text = head + f"{len(modulation.cycles)} cycles, {usable} usable"
    text += (
        f"<br>&nbsp;&nbsp;newest: cycle {latest.cycle} (minirun {latest.minirun}): "
        f"{latest.coils} coils fitted, {latest.windows:,} windows"
    )
    if latest.dead_coils:
        text += _badge("DEAD COIL " + ", ".join(latest.dead_coils), "#c00000")
    if latest.skipped:
        text += f"<br>&nbsp;&nbsp;{_badge('NO SENSITIVITIES', '#b07800')}"
        text += f"<i>{html.escape(latest.skipped)}</i>"
    if not modulation.run:
        text += "<br>&nbsp;&nbsp;run sensitivities: none yet (no usable cycle)"
    return text


class DifferencePlot:
    """Regression minus dithering slopes per cycle, in their errors, a marker series per
    beam variable; the dashed band is ±3 sigma."""

    def __init__(self) -> None:
        self.y_range = Range1d(-5, 5, name="modulation_difference_y_range")
        self.plot = figure(
            title="Regression − dithering, per cycle (combined)",
            x_axis_label="modulation cycle",
            y_axis_label="(regression − dithering) / error",
            y_range=self.y_range,
            width=520,
            height=260,
            tools="pan,wheel_zoom,reset,save",
            name="modulation_difference_plot",
        )
        self.sources: dict[str, ColumnDataSource] = {}
        for variable, colour in VARIABLE_COLOURS.items():
            source = ColumnDataSource(
                cols.difference_pull_columns(None, variable),
                name=f"modulation_difference_{variable}",
            )
            self.plot.scatter("x", "y", source=source, size=7, color=colour, legend_label=variable)
            self.sources[variable] = source
        self.plot.add_layout(self.plot.legend[0], "right")
        self.plot.xaxis.ticker = AdaptiveTicker(min_interval=1, num_minor_ticks=0)
        for level in (-PULL_LIMIT, PULL_LIMIT):
            self.plot.add_layout(
                Span(location=level, dimension="width", line_color="#c00000", line_dash="dashed")
            )
        self.plot.add_layout(Span(location=0, dimension="width", line_color="black"))

    def apply(self, modulation: Modulation | None) -> None:
        largest = PULL_LIMIT
        for variable, source in self.sources.items():
            data = cols.difference_pull_columns(modulation, variable)
            source.data = data
            if len(data["y"]):
                largest = max(largest, float(abs(data["y"]).max()))
        self.y_range.update(start=-1.2 * largest - 0.5, end=1.2 * largest + 0.5)


class ModulationPanel:
    """The status above the sensitivity table and the difference plot; one short line for
    a run without a cycle."""

    def __init__(self) -> None:
        self.state = Div(name="modulation_state", text=NO_CYCLE, width=420)
        self.source = ColumnDataSource(
            cols.sensitivity_columns(None), name="modulation_sensitivity_source"
        )
        pull = NumberFormatter(format="+0.0", nan_format="–")
        text = StringFormatter()
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(field="variable", title="variable", formatter=text, width=60),
                TableColumn(field="cycle_shown", title="newest cycle", formatter=text, width=130),
                TableColumn(field="run_shown", title="run", formatter=text, width=130),
                TableColumn(field="difference_shown", title="reg − dit", formatter=text, width=130),
                TableColumn(field="pull", title="in σ", formatter=pull, width=50),
                TableColumn(field="unit", title="unit", formatter=text, width=80),
            ],
            height=170,
            width=660,
            index_position=None,
            name="modulation_sensitivity_table",
        )
        self.plot = DifferencePlot()
        self.details = row(
            column(
                Div(
                    text="<b>Sensitivities of the combined asymmetry</b> (from the coils; "
                    "reg − dit: the run's regression slope minus it)"
                ),
                self.table,
            ),
            self.plot.plot,
            visible=False,
            name="modulation_details",
        )
        self.layout = column(self.state, self.details, sizing_mode="stretch_width")
        self.shown: Modulation | None = None

    def apply(self, modulation: Modulation | None) -> None:
        if modulation == self.shown:
            return
        self.shown = modulation
        self.state.text = modulation_html(modulation)
        self.details.visible = modulation is not None
        self.source.data = cols.sensitivity_columns(modulation)
        self.plot.apply(modulation)
