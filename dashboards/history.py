"""History page (``/history``): browse a past run's miniruns and overlay a reference run.

Pick a run (or open ``/history?run=N&ref=M``): the per-minirun combined asymmetry with error
bars versus minirun index, the running asymmetry versus time, the whole-run result with
χ²/ndf, a minirun table with coloured pulls, and the same curves of a reference run overlaid
with the difference of the two results in standard deviations; below, the combined
asymmetry's regression slopes on each beam variable, minirun by minirun, with errors.
Reads the database on demand through one engine per process; runs are small enough to
read in the event loop.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    AdaptiveTicker,
    Button,
    ColumnDataSource,
    Div,
    NumberFormatter,
    Range1d,
    Select,
    Span,
    StringFormatter,
    TableColumn,
)
from bokeh.plotting import figure
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mupnc.daq.beamline import BEAM_VARIABLES, SLOPE_DISPLAY
from mupnc.dashboards import queries
from mupnc.dashboards.columns import (
    asymmetry_columns,
    minirun_columns,
    slope_columns,
    with_errors,
)
from mupnc.dashboards.display import (
    PPM,
    Unit,
    choose_unit,
    format_asymmetry,
    magnitude,
    minirun_pulls,
    pull_colours,
    settled,
    y_range,
)
from mupnc.dashboards.panels import SETTLED_FRACTION, TOOLS, label, whisker
from mupnc.dashboards.records import COMBINED, Channel, MinirunMean, RunInfo, Slope, Snapshot
from mupnc.dashboards.tables import live_table

NONE = "none"
HEADER = "<b style='font-size:18px'>mupnc run history</b> · <a href='/'>live shifter page</a>"
REFERENCE_SHIFT = 0.2
"""Minirun-index offset of the reference run's points, so both sets of error bars show."""
MINIRUN_KEYS = ("x", "y", "lo", "hi")
REFERENCE_COLOUR = "#c03000"
"""The reference run's points and summary line (its colour names it, not a judgement)."""


@dataclass(frozen=True)
class RunRecord:
    """Everything the history page shows of one run."""

    info: RunInfo
    combined: Channel | None
    miniruns: tuple[MinirunMean, ...]
    snapshots: tuple[Snapshot, ...]
    slopes: tuple[Slope, ...] = ()


def load_run(engine: Engine, number: int) -> RunRecord | None:
    """Read run ``number`` (None if it does not exist)."""
    with Session(engine) as session:
        info = queries.get_run(session, number)
        if info is None:
            return None
        channels = queries.cumulative_channels(session, number)
        return RunRecord(
            info,
            next((c for c in channels if c.name == COMBINED), None),
            queries.minirun_means(session, number),
            tuple(s for _, s in queries.snapshot_rows(session, number)),
            queries.minirun_slopes(session, number),
        )


def run_options(engine: Engine) -> list[tuple[str, str]]:
    """(value, label) per run, newest first, for the run pickers."""
    with Session(engine) as session:
        runs = queries.runs(session)
    return [
        (str(r.number), f"run {r.number} · {label(r.mode)} · {r.state} · {r.start:%Y-%m-%d %H:%M}")
        for r in runs
    ]


def difference_sigma(a: Channel | None, b: Channel | None) -> float | None:
    """(A_a − A_b) / sqrt(σ_a² + σ_b²) of two independent results; None if either is unknown."""
    if a is None or b is None or None in (a.value, a.error, b.value, b.error):
        return None
    scale = math.hypot(a.error, b.error)
    return None if scale == 0 else (a.value - b.value) / scale


def minirun_table(miniruns: tuple[MinirunMean, ...], unit: Unit) -> dict[str, list | np.ndarray]:
    """Table columns per minirun: index, patterns, A and σ in ``unit`` (and ``A ± σ`` as text
    rounded to the error, ``shown``), pull about the mean."""
    usable = [m for m in miniruns if m.value is not None and m.error is not None and m.error > 0]
    values = np.array([m.value for m in usable], dtype=float)
    errors = np.array([m.error for m in usable], dtype=float)
    pull = minirun_pulls(values, errors) if len(usable) > 1 else np.full(len(usable), np.nan)
    return {
        "index": [m.index for m in usable],
        "patterns": [m.patterns_good for m in usable],
        "value": values * unit.scale,
        "error": errors * unit.scale,
        "shown": with_errors(values * unit.scale, errors * unit.scale),
        "pull": pull,
        "colour": pull_colours(pull),
    }


def summary_html(record: RunRecord, reference: RunRecord | None, unit: Unit) -> str:
    """Run summary (escaped), blinding, and the comparison with the reference run."""
    info, combined = record.info, record.combined
    name = label(info.mode)
    lines = [
        f"<b>Run {info.number}</b> · {html.escape(info.origin)} · {html.escape(info.state)} · "
        f"started {info.start:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if info.blinded:
        lines.append("<b style='background:#000;color:#ffd700;padding:0 6px'>BLINDED</b>")
    if combined is not None:
        chi2 = "–" if combined.chi2_ndf is None else f"{combined.chi2_ndf:.2f}"
        lines.append(
            f"{name} = {format_asymmetry(combined.value, combined.error, unit)}, "
            f"χ²/ndf of {len(record.miniruns)} miniruns {chi2}"
        )
    if info.expected is not None and not info.blinded:
        lines.append(f"injected {info.expected * unit.scale:.4g} {unit.name}")
    if reference is not None:
        ref = reference.combined
        text = "no result" if ref is None else format_asymmetry(ref.value, ref.error, unit)
        blinded = " (BLINDED)" if reference.info.blinded else ""
        lines.append(
            f"<span style='color:{REFERENCE_COLOUR}'>reference run {reference.info.number}"
            f"{blinded}: {text}</span>"
        )
        sigma = difference_sigma(combined, ref)
        if sigma is not None:
            lines[-1] += f"; difference {difference_html(sigma)}"
    return "<br>".join(lines)


SIGNIFICANT = 3.0
"""A difference of two runs is remarkable (and coloured) from this many σ."""


def difference_html(sigma: float) -> str:
    """The difference of two runs in σ: red and bold from :data:`SIGNIFICANT`, plain below
    (an unremarkable difference is not coloured)."""
    text = f"{sigma:+.2f} σ"
    if abs(sigma) >= SIGNIFICANT:
        return f"<b style='color:#c00000'>{text}</b>"
    return text


def minirun_ticker() -> AdaptiveTicker:
    """Ticks at whole minirun numbers only (1, 2, 5, 10, ... apart; never 0.5)."""
    return AdaptiveTicker(min_interval=1, num_minor_ticks=0)


class HistoryView:
    """The models of one session's history page."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pick = Select(title="run", name="run_select", width=360)
        self.reference = Select(title="reference run", name="reference_select", width=360)
        self.refresh = Button(label="refresh run list", width=140, align="end")
        self.refresh.on_click(self.fill_options)
        self.summary = Div(name="history_summary", sizing_mode="stretch_width")
        self.miniruns = ColumnDataSource(
            {k: np.empty(0) for k in MINIRUN_KEYS}, name="minirun_source"
        )
        self.ref_miniruns = ColumnDataSource(
            {k: np.empty(0) for k in MINIRUN_KEYS}, name="reference_minirun_source"
        )
        self.running = ColumnDataSource(
            {k: np.empty(0) for k in MINIRUN_KEYS}, name="history_running"
        )
        self.ref_running = ColumnDataSource(
            {k: np.empty(0) for k in MINIRUN_KEYS}, name="reference_running"
        )
        self.mean = Span(
            location=0, dimension="width", line_color="navy", line_dash="dashed", visible=False
        )
        self.minirun_plot = figure(
            title="Miniruns",
            name="minirun_plot",
            x_axis_label="minirun",
            y_axis_label="A (ppm)",
            y_range=Range1d(-1, 1),
            height=320,
            sizing_mode="stretch_width",
            tools=TOOLS,
        )
        self.running_plot = figure(
            title="Running asymmetry (cumulative)",
            name="history_running_plot",
            x_axis_label="time since run start (s)",
            y_axis_label="A (ppm)",
            y_range=Range1d(-1, 1),
            height=320,
            sizing_mode="stretch_width",
            tools=TOOLS,
        )
        for plot in (self.minirun_plot, self.running_plot):
            plot.add_layout(Span(location=0, dimension="width", line_color="black"))
        self.minirun_plot.add_layout(self.mean)
        layers = (
            (self.minirun_plot, self.miniruns, False, 6, "circle"),
            (self.minirun_plot, self.ref_miniruns, True, 6, "square"),
            (self.running_plot, self.running, False, 4, "circle"),
            (self.running_plot, self.ref_running, True, 4, "circle"),
        )
        for plot, source, ref, size, marker in layers:
            colour = REFERENCE_COLOUR if ref else "navy"
            plot.add_layout(whisker(source, colour))
            plot.scatter(
                "x",
                "y",
                source=source,
                color=colour,
                size=size,
                legend_label="reference" if ref else "run",
                marker=marker,
            )
        for plot in (self.minirun_plot, self.running_plot):
            plot.legend.location = "top_right"
        self.minirun_plot.xaxis.ticker = minirun_ticker()
        self.table_source = ColumnDataSource(minirun_table((), PPM), name="minirun_table")
        self.value_column = TableColumn(
            field="shown", title="A ± σ (ppm)", formatter=StringFormatter(), width=150
        )
        self.table = live_table(
            self.table_source,
            columns=[
                TableColumn(field="index", title="minirun"),
                TableColumn(
                    field="patterns", title="good patterns", formatter=NumberFormatter(format="0,0")
                ),
                self.value_column,
                TableColumn(
                    field="pull",
                    title="pull",
                    formatter=NumberFormatter(
                        format="+0.00", nan_format="–", background_color="colour"
                    ),
                ),
            ],
            width=480,
            height=320,
            index_position=None,
        )
        self.slopes = {
            v: ColumnDataSource(slope_columns((), v), name=f"slopes_{v}") for v in BEAM_VARIABLES
        }
        self.slope_plots = []
        for variable, source in self.slopes.items():
            plot = figure(
                title=f"slope on {variable}",
                name=f"slope_plot_{variable}",
                x_axis_label="minirun",
                y_axis_label=f"∂A/∂{variable} ({SLOPE_DISPLAY[variable][0]})",
                height=220,
                width=260,
                tools=TOOLS,
            )
            plot.xaxis.ticker = minirun_ticker()
            plot.add_layout(Span(location=0, dimension="width", line_color="black"))
            plot.add_layout(whisker(source, "green"))
            plot.scatter("x", "y", source=source, color="green", size=5)
            self.slope_plots.append(plot)
        self.pick.on_change("value", lambda _attr, _old, _new: self.show())
        self.reference.on_change("value", lambda _attr, _old, _new: self.show())
        self.layout = column(
            Div(text=HEADER),
            row(self.pick, self.reference, self.refresh),
            self.summary,
            row(self.minirun_plot, self.table, sizing_mode="stretch_width"),
            self.running_plot,
            Div(text="<b>Regression slopes of the combined asymmetry</b>, each minirun's own"),
            row(*self.slope_plots, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    def fill_options(self) -> None:
        """Read the run list into both pickers, keeping the current choices."""
        options = run_options(self.engine)
        self.pick.options = options
        self.reference.options = [(NONE, "none"), *options]
        values = [v for v, _ in options]
        if self.pick.value not in values:
            self.pick.value = values[0] if values else ""
        if self.reference.value not in values:
            self.reference.value = NONE

    def show(self) -> None:
        """Read and show the chosen run and reference run."""
        record = load_run(self.engine, int(self.pick.value)) if self.pick.value.isdigit() else None
        if record is None:
            self.summary.text = "<b>No run chosen (the database has none yet).</b>"
            return
        ref_value = self.reference.value
        reference = load_run(self.engine, int(ref_value)) if ref_value.isdigit() else None
        combined = [r.combined for r in (record, reference) if r is not None and r.combined]
        unit = choose_unit(magnitude([c.value for c in combined] + [c.error for c in combined]))
        name = label(record.info.mode)
        for plot in (self.minirun_plot, self.running_plot):
            plot.yaxis.axis_label = f"{name} ({unit.name})"
        self.minirun_plot.title.text = f"{name} per minirun, run {record.info.number}"
        self.running_plot.title.text = (
            f"Running {name} (cumulative: each point holds all data before it), "
            f"run {record.info.number}"
        )
        self.miniruns.data = minirun_columns(record.miniruns, unit)
        self.running.data = asymmetry_columns(record.snapshots, record.info.start, unit)
        if reference is None:
            self.ref_miniruns.data = {k: np.empty(0) for k in MINIRUN_KEYS}
            self.ref_running.data = {k: np.empty(0) for k in MINIRUN_KEYS}
        else:
            shifted = minirun_columns(reference.miniruns, unit)
            shifted["x"] = shifted["x"] + REFERENCE_SHIFT
            self.ref_miniruns.data = shifted
            self.ref_running.data = asymmetry_columns(
                reference.snapshots, reference.info.start, unit
            )
        c = record.combined
        self.mean.visible = c is not None and c.value is not None
        self.mean.location = (c.value or 0.0) * unit.scale if self.mean.visible else 0.0
        self.value_column.title = f"A ± σ ({unit.name})"
        self.table_source.data = minirun_table(record.miniruns, unit)
        self.summary.text = summary_html(record, reference, unit)
        self._fit(self.minirun_plot, (self.miniruns, self.ref_miniruns), self.mean.location, 0.0)
        self._fit(self.running_plot, (self.running, self.ref_running), None, SETTLED_FRACTION)
        for variable, source in self.slopes.items():
            source.data = slope_columns(record.slopes, variable)

    @staticmethod
    def _fit(plot, sources, line: float | None, fraction: float) -> None:
        """y range over the error bars (after the first ``fraction`` of x), zero and ``line``."""
        lo, hi = [], []
        for source in sources:
            x, low, high = (np.asarray(source.data[k], dtype=float) for k in ("x", "lo", "hi"))
            keep = settled(x, fraction)
            lo.append(low[keep])
            hi.append(high[keep])
        start, end = y_range(np.concatenate(lo), np.concatenate(hi), [0.0, line])
        plot.y_range.update(start=start, end=end)


def _argument(doc: Document, name: str) -> str | None:
    context = doc.session_context
    request = getattr(context, "request", None) if context is not None else None
    values = (request.arguments if request is not None else {}).get(name)
    return values[0].decode() if values else None


def make_history(doc: Document, engine: Engine) -> None:
    """Build the history page in ``doc``; ``?run=N&ref=M`` preselect the runs."""
    view = HistoryView(engine)
    view.fill_options()
    values = [v for v, _ in view.pick.options]
    run, ref = _argument(doc, "run"), _argument(doc, "ref")
    if run in values:
        view.pick.value = run
    if ref in values:
        view.reference.value = ref
    view.show()
    doc.add_root(view.layout)
    doc.title = "mupnc history"
