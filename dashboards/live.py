"""Shifter page: the running combined asymmetry of the most recent run, live.

Each browser session streams the snapshots its :class:`~dashboards.feed.Feed` cursor has not
seen yet from a 1 s periodic callback.  Plot and table show asymmetries in ppm.
"""

from __future__ import annotations

import html
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    Band,
    ColumnDataSource,
    DataTable,
    Div,
    NumberFormatter,
    Span,
    TableColumn,
    TeeHead,
    Whisker,
)
from bokeh.plotting import figure

from dashboards.feed import Channel, Feed, RunInfo, Snapshot, Update

PPM = 1e6
ROLLOVER = 20000
PERIOD_MS = 1000
LABELS = {"alr": "A_LR", "afb": "A_FB"}


def label(mode: str) -> str:
    """``A_LR`` or ``A_FB`` for a run mode (``alr``/``afb``)."""
    return LABELS.get(mode, "A")


def stream_columns(snapshots: Sequence[Snapshot], start: datetime) -> dict[str, np.ndarray]:
    """Plot columns: ``x`` (s since ``start``), ``y`` ± error as ``lo``/``hi`` (ppm).

    Snapshots without a value or error (early in a run) are left out.
    """
    usable = [s for s in snapshots if s.value is not None and s.error is not None]
    x = np.array([(s.time - start).total_seconds() for s in usable], dtype=float)
    y = np.array([s.value for s in usable], dtype=float) * PPM
    e = np.array([s.error for s in usable], dtype=float) * PPM
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


def channel_columns(channels: Sequence[Channel]) -> dict[str, np.ndarray]:
    """Table columns: ``value`` and ``error`` (ppm), ``pull`` = value/error; NaN if unknown."""
    value = np.array([math.nan if c.value is None else c.value for c in channels]) * PPM
    error = np.array([math.nan if c.error is None else c.error for c in channels]) * PPM
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where(error > 0, value / error, math.nan)
    return {"channel": [c.name for c in channels], "value": value, "error": error, "pull": pull}


def format_ppm(value: float, error: float) -> str:
    """``value ± error`` in ppm (inputs fractions), rounded to two digits of the error."""
    v, e = value * PPM, error * PPM
    digits = max(0, 1 - math.floor(math.log10(e))) if e > 0 else 2
    return f"{v:.{digits}f} ± {e:.{digits}f} ppm"


def result_html(run: RunInfo | None, latest: Snapshot | None, now: datetime) -> str:
    """The result box; strings from the database are escaped."""
    if run is None:
        return "<b>No run in the database yet.</b>"
    items = [
        ("run", str(run.number)),
        ("state", html.escape(run.state)),
        (label(run.mode), "no result yet"),
        ("blinded", "yes" if run.blinded else "no"),
    ]
    if run.expected is not None and not run.blinded:
        items.append(("injected", f"{run.expected * PPM:.3f} ppm"))
    if latest is None:
        items.append(("last update", "no snapshot yet"))
    else:
        if latest.value is not None and latest.error is not None:
            items[2] = (label(run.mode), format_ppm(latest.value, latest.error))
        age = max(0, round((now - latest.time).total_seconds()))
        items += [
            ("good patterns", f"{latest.patterns_good:,}"),
            ("windows", f"{latest.windows:,}"),
            ("lost windows", f"{latest.lost_windows:,}"),
            ("last update", f"{age} s ago"),
        ]
    cells = "".join(f"<tr><th align='left'>{k}</th><td>{v}</td></tr>" for k, v in items)
    return f"<table>{cells}</table>"


class LiveView:
    """The models of one session's page."""

    def __init__(self) -> None:
        self.shown_channels: tuple[Channel, ...] = ()
        self.source = ColumnDataSource(
            {k: np.empty(0) for k in ("x", "y", "lo", "hi")}, name="asym_source"
        )
        self.band = ColumnDataSource(
            {k: np.empty(0) for k in ("x", "lower", "upper")}, name="band_source"
        )
        self.table = ColumnDataSource(channel_columns([]), name="channel_source")
        self.plot = figure(
            title="Running asymmetry",
            x_axis_label="time since run start (s)",
            y_axis_label="A (ppm)",
            height=420,
            sizing_mode="stretch_width",
            tools="pan,box_zoom,wheel_zoom,reset,save",
        )
        self.plot.add_layout(
            Band(
                base="x",
                lower="lower",
                upper="upper",
                source=self.band,
                fill_color="orange",
                fill_alpha=0.25,
                line_color="orange",
                level="underlay",
            )
        )
        self.plot.add_layout(Span(location=0, dimension="width", line_color="black"))
        self.expected = Span(
            location=0, dimension="width", line_color="red", line_dash="dashed", visible=False
        )
        self.plot.add_layout(self.expected)
        self.plot.add_layout(
            Whisker(
                base="x",
                lower="lo",
                upper="hi",
                source=self.source,
                line_color="navy",
                lower_head=TeeHead(size=8, line_color="navy"),
                upper_head=TeeHead(size=8, line_color="navy"),
            )
        )
        self.plot.scatter("x", "y", source=self.source, size=5, color="navy")
        self.box = Div(width=320)
        ppm = NumberFormatter(format="0.000", nan_format="–")
        columns = [
            TableColumn(field="channel", title="channel"),
            TableColumn(field="value", title="A (ppm)", formatter=ppm),
            TableColumn(field="error", title="σ (ppm)", formatter=ppm),
            TableColumn(field="pull", title="pull", formatter=NumberFormatter(format="0.00")),
        ]
        self.channels = DataTable(
            source=self.table, columns=columns, width=320, height=240, index_position=None
        )
        self.layout = row(self.plot, column(self.box, self.channels), sizing_mode="stretch_width")

    def apply(self, update: Update, now: datetime) -> None:
        """Show ``update``: reset on a new run, stream new points, refresh box and table."""
        run = update.run
        if run is not None:
            columns = stream_columns(update.snapshots, run.start)
            if update.reset:
                self.plot.title.text = f"Running {label(run.mode)}, run {run.number}"
                self.expected.visible = run.expected is not None and not run.blinded
                self.expected.location = (run.expected or 0.0) * PPM
                self.source.data = columns
            elif len(columns["x"]):
                self.source.stream(columns, rollover=ROLLOVER)
            if update.reset or len(columns["x"]):
                self._update_band()
        self.box.text = result_html(run, update.latest, now)
        if update.channels != self.shown_channels:
            self.shown_channels = update.channels
            self.table.data = channel_columns(update.channels)

    def _update_band(self) -> None:
        """Cumulative mean ± σ (the newest point) across the plotted time span."""
        data = self.source.data
        if len(data["x"]) == 0:
            self.band.data = {k: np.empty(0) for k in ("x", "lower", "upper")}
            return
        x = np.array([data["x"][0], data["x"][-1]], dtype=float)
        self.band.data = {
            "x": x,
            "lower": np.full(2, data["lo"][-1], dtype=float),
            "upper": np.full(2, data["hi"][-1], dtype=float),
        }


def make_document(doc: Document, feed: Feed) -> None:
    """Build the shifter page in ``doc`` and poll ``feed`` every second."""
    view = LiveView()
    session = uuid.uuid4().hex
    feed.attach(session)

    def tick() -> None:
        doc.hold("combine")
        try:
            view.apply(feed.since(session), datetime.now(UTC))
        finally:
            doc.unhold()

    view.apply(feed.since(session), datetime.now(UTC))
    doc.add_root(view.layout)
    doc.title = "mupnc live"
    doc.add_periodic_callback(tick, PERIOD_MS)
    doc.on_session_destroyed(lambda _context: feed.detach(session))
