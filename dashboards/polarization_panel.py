"""The shifter page's polarization panel (Bokeh): what the muon polarimeter measures, per
spin state and minirun, and whether the spin flips completely
(:mod:`mupnc.monitor.analysis.polarimetry`).

A run without a polarimeter gets one short line.
"""

from __future__ import annotations

import html

import numpy as np
from bokeh.layouts import column, row
from bokeh.models import AdaptiveTicker, ColumnDataSource, Div, Range1d, Whisker
from bokeh.plotting import figure

from mupnc.dashboards.display import format_with_error
from mupnc.dashboards.records import MeasuredPolarization, PolarizationPoint

NO_POLARIMETER = "polarization: no polarimeter in this run (the configured value divides)"
FLIP_LIMIT = 5.0
"""``|P+| - |P-|`` beyond this many errors is an incomplete flip (the shipped alarm's)."""
BADGE = "display:inline-block;padding:0 6px;margin:0 4px;border-radius:4px;color:white;"
STATES = {"plus": ("P+", "#1f77b4"), "minus": ("|P−|", "#d62728")}


def _value(value: float | None, error: float | None) -> str:
    return format_with_error(value, error, "")


def polarization_html(measured: MeasuredPolarization | None) -> str:
    """The run's measured polarization per state and effective, the flip quality in its
    errors (a red INCOMPLETE FLIP badge beyond :data:`FLIP_LIMIT`) and the asymmetry the
    configured polarization would give."""
    if measured is None:
        return f"<span style='color:#555'>{html.escape(NO_POLARIMETER)}</span>"
    p = measured.run
    text = (
        "<b>Polarization</b> (measured by the polarimeter; divides the asymmetries)"
        f"<br>&nbsp;&nbsp;effective <b>{_value(p.effective, p.effective_error)}</b>;"
        f" P+ {_value(p.plus, p.plus_error)}, P− {_value(p.minus, p.minus_error)}"
        f"<br>&nbsp;&nbsp;flip |P+| − |P−| {_value(p.flip_quality, p.flip_quality_error)}"
    )
    latest = measured.miniruns[-1] if measured.miniruns else p
    sigma = latest.flip_sigma
    if sigma is not None:
        text += f" (minirun {latest.minirun}: {sigma:+.1f} σ)"
        if abs(sigma) > FLIP_LIMIT:
            text += f"<span style='{BADGE}background:#c00000'>INCOMPLETE FLIP</span>"
    if measured.configured is not None and measured.configured_error is not None:
        text += "<br>&nbsp;&nbsp;the configured polarization would give " + format_with_error(
            measured.configured * 1e6, measured.configured_error * 1e6, "ppm"
        )
    return text


def state_columns(miniruns: tuple[PolarizationPoint, ...], state: str) -> dict[str, np.ndarray]:
    """``|P|`` of one spin state (``plus`` or ``minus``) per minirun with its error bar;
    undefined miniruns are left out."""
    points = [
        (p.minirun, getattr(p, state), getattr(p, f"{state}_error"))
        for p in miniruns
        if getattr(p, state) is not None and getattr(p, f"{state}_error") is not None
    ]
    x = np.array([m for m, _, _ in points], dtype=float)
    y = np.abs(np.array([v for _, v, _ in points], dtype=float))
    e = np.array([err for _, _, err in points], dtype=float)
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


class PolarizationPanel:
    """The run's polarization beside |P+| and |P-| per minirun; one short line for a run
    without a polarimeter."""

    def __init__(self) -> None:
        self.state = Div(name="polarization_state", text=NO_POLARIMETER, width=460)
        self.y_range = Range1d(0, 1, name="polarization_y_range")
        self.plot = figure(
            title="Polarization per minirun and spin state",
            x_axis_label="minirun",
            y_axis_label="|P| (polarimeter)",
            y_range=self.y_range,
            width=520,
            height=240,
            tools="pan,wheel_zoom,reset,save",
            name="polarization_plot",
        )
        self.plot.xaxis.ticker = AdaptiveTicker(min_interval=1, num_minor_ticks=0)
        self.sources: dict[str, ColumnDataSource] = {}
        for state, (label, colour) in STATES.items():
            source = ColumnDataSource(state_columns((), state), name=f"polarization_{state}")
            self.plot.scatter("x", "y", source=source, size=7, color=colour, legend_label=label)
            self.plot.add_layout(
                Whisker(source=source, base="x", lower="lo", upper="hi", line_color=colour)
            )
            self.sources[state] = source
        self.plot.legend.location = "bottom_left"
        self.details = row(self.state, self.plot, visible=False, name="polarization_details")
        self.line = Div(text=NO_POLARIMETER, name="polarization_none", styles={"color": "#555"})
        self.layout = column(self.line, self.details, sizing_mode="stretch_width")
        self.shown: MeasuredPolarization | None = None

    def apply(self, measured: MeasuredPolarization | None) -> None:
        if measured == self.shown:
            return
        self.shown = measured
        self.line.visible = measured is None
        self.details.visible = measured is not None
        self.state.text = polarization_html(measured)
        miniruns = () if measured is None else measured.miniruns
        values = []
        for state, source in self.sources.items():
            data = state_columns(miniruns, state)
            source.data = data
            values += [data["lo"], data["hi"]]
        spread = np.concatenate(values) if values else np.empty(0)
        if spread.size:
            low, high = float(spread.min()), float(spread.max())
            pad = max(0.02, 0.1 * (high - low))
            self.y_range.update(start=max(0.0, low - pad), end=min(1.05, high + pad))
