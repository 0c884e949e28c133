"""Bokeh panels of the shifter page.  Each panel owns the models of one session and has an
``apply`` that shows new feed data; the numbers come from :mod:`mupnc.dashboards.columns`.

Every streamed source has a rollover; strings from the database reach the page only as
escaped HTML or table cells, never as markup.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
from bokeh.events import MouseWheel, PanStart, Reset
from bokeh.layouts import column, row
from bokeh.models import (
    Band,
    ColumnDataSource,
    DataRange1d,
    Div,
    LabelSet,
    LinearAxis,
    NumberFormatter,
    Range1d,
    Span,
    StringFormatter,
    TableColumn,
    TeeHead,
    Toggle,
    Whisker,
)
from bokeh.plotting import figure

from mupnc.dashboards import columns as cols
from mupnc.dashboards.display import (
    PPM,
    PULL_EDGES,
    Unit,
    choose_unit,
    magnitude,
    minirun_pulls,
    pull_histogram,
    settled,
    unit_gaussian,
    y_range,
)
from mupnc.dashboards.live_results import LiveResult
from mupnc.dashboards.records import (
    BeamDifference,
    Channel,
    FeedbackDecision,
    MinirunMean,
    RunInfo,
    Sample,
    Snapshot,
)
from mupnc.dashboards.tables import live_table
from mupnc.monitor.decoding.stream import ERROR_KINDS

ROLLOVER = 20000
"""Points kept per streamed source: 5.5 h of snapshots at 1 Hz."""
STRIP_WINDOW = 600.0
"""Seconds shown by the beam strip charts."""
SETTLED_FRACTION = 0.1
"""The y range of the running asymmetry ignores the error bars of the first tenth of the
plotted time, where 1/sqrt(t) errors are large; those bars may run off the plot."""
LABELS = {"alr": "A_LR", "afb": "A_FB"}
TOOLS = "pan,wheel_zoom,reset,save"
RATE_HEADROOM = 1.5
"""The window-rate axis ends at this many times the median decoded rate shown: a burst
above it (a catch-up after a pause) is flagged at the top instead of squashing the trace."""


def label(mode: str) -> str:
    """``A_LR`` or ``A_FB`` for a run mode (``alr``/``afb``)."""
    return LABELS.get(mode, "A")


def _empty(keys: Sequence[str]) -> dict[str, np.ndarray]:
    return {k: np.empty(0) for k in keys}


def whisker(source: ColumnDataSource, colour: str) -> Whisker:
    """Error bars from columns ``lo`` to ``hi`` at ``x``."""
    return Whisker(
        base="x",
        lower="lo",
        upper="hi",
        source=source,
        line_color=colour,
        lower_head=TeeHead(size=7, line_color=colour),
        upper_head=TeeHead(size=7, line_color=colour),
    )


DECODER_COLOURS = {
    "locked": "#1a7f1a",
    "learning": "#b07800",
    "unlocked": "#c00000",
    "not locked": "#c00000",
}


class AsymmetryPlot:
    """Running asymmetry with error bars — cumulative: each point holds every pattern before
    it, so neighbouring points are strongly correlated (title and legend say so) — the
    cumulative mean ± σ band, zero and expected lines; the regressed asymmetry (corrected
    for the beam differences) in green beside it.

    The y range follows the data (error bars and lines included) until the shifter pans or
    zooms; the reset tool or the toggle turns following back on.
    """

    def __init__(self) -> None:
        self.unit = PPM
        self.source = ColumnDataSource(_empty(cols.ASYMMETRY_KEYS), name="asym_source")
        self.regressed = ColumnDataSource(_empty(cols.ASYMMETRY_KEYS), name="regressed_source")
        self.band = ColumnDataSource(_empty(("x", "lower", "upper")), name="band_source")
        self.y_range = Range1d(-1, 1, name="asym_y_range")
        self.plot = figure(
            title="Running asymmetry",
            x_axis_label="time since run start (s)",
            y_axis_label="A (ppm)",
            y_range=self.y_range,
            height=400,
            sizing_mode="stretch_width",
            tools=TOOLS,
            name="asym_plot",
        )
        self.band_renderer = Band(
            base="x",
            lower="lower",
            upper="upper",
            source=self.band,
            fill_color="orange",
            fill_alpha=0.25,
            line_color="orange",
            level="underlay",
        )
        self.plot.add_layout(self.band_renderer)
        self.plot.add_layout(Span(location=0, dimension="width", line_color="black"))
        self.expected = Span(
            location=0,
            dimension="width",
            line_color="red",
            line_dash="dashed",
            line_width=2,
            visible=False,
        )
        self.plot.add_layout(self.expected)
        bars = whisker(self.source, "navy")
        self.plot.add_layout(bars)
        raw = self.plot.scatter(
            "x", "y", source=self.source, size=5, color="navy",
            legend_label="raw: all data up to each point (neighbours correlated)",
        )  # fmt: skip
        regressed_bars = whisker(self.regressed, "green")
        self.plot.add_layout(regressed_bars)
        regressed = self.plot.scatter(
            "x", "y", source=self.regressed, size=5, color="green", marker="diamond",
            legend_label="regressed, likewise cumulative",
        )  # fmt: skip
        self.live = ColumnDataSource(_empty(cols.ASYMMETRY_KEYS), name="asym_live_source")
        live_bars = whisker(self.live, "darkorange")
        self.plot.add_layout(live_bars)
        live = self.plot.scatter(
            "x", "y", source=self.live, size=9, color="darkorange", marker="circle_dot",
            fill_alpha=0, legend_label="newest (the monitor's result PVs, 4 per second)",
        )  # fmt: skip
        self.intervals = ColumnDataSource(_empty(cols.ASYMMETRY_KEYS), name="interval_source")
        self.interval_opener: Snapshot | None = None
        """The newest snapshot that closed an interval (None: the run start)."""
        interval_bars = whisker(self.intervals, "purple")
        self.plot.add_layout(interval_bars)
        interval = self.plot.scatter(
            "x", "y", source=self.intervals, size=6, color="purple", marker="square",
            legend_label=f"raw, each {cols.INTERVAL_SECONDS:.0f} s on its own (independent)",
        )  # fmt: skip
        self.cumulative_glyphs = (self.band_renderer, bars, raw, regressed_bars, regressed)
        self.cumulative_glyphs += (live_bars, live)
        self.interval_glyphs = (interval_bars, interval)
        self.plot.legend.location = "top_left"
        self.follow = Toggle(label="auto y-range", active=True, width=120)
        self.follow.on_change("active", lambda _attr, _old, _new: self._fit())
        self.per_interval = Toggle(
            label=f"per {cols.INTERVAL_SECONDS:.0f} s", active=False, width=90,
            name="interval_toggle",
        )  # fmt: skip
        self.per_interval.on_change("active", lambda _attr, _old, _new: self._show_kind())
        self.expected_value: float | None = None
        self.buttons = row(self.follow, self.per_interval)
        self.mode_label, self.run_number, self.title_key = "A", None, ""
        self._show_kind()
        for event in (PanStart, MouseWheel):
            self.plot.on_event(event, self._stop_following)
        self.plot.on_event(Reset, self._start_following)

    def _stop_following(self, _event) -> None:
        self.follow.active = False

    def _start_following(self, _event) -> None:
        self.follow.active = True
        self._fit()

    def apply(self, run: RunInfo, snapshots: Sequence[Snapshot], reset: bool) -> None:
        """Reset for a new run or stream ``snapshots``; rescale if the unit changes."""
        if reset:
            self.expected_value = None if run.blinded else run.expected
            self.mode_label, self.run_number = label(run.mode), run.number
            self.title_key = ", red dashed: injected" if self.expected_value else ""
            self.expected.visible = self.expected_value is not None
            self.unit = self._unit(snapshots, None)
            self.source.data = cols.asymmetry_columns(snapshots, run.start, self.unit)
            self.regressed.data = cols.regressed_columns(snapshots, run.start, self.unit)
            self.live.data = _empty(cols.ASYMMETRY_KEYS)
            self.interval_opener = None
            self.intervals.data = self._interval_columns(run, snapshots)
            self._show_kind()
        elif snapshots:
            unit = self._unit(snapshots, self.unit)
            if unit != self.unit:
                ratio = unit.scale / self.unit.scale
                for source in (self.source, self.regressed, self.live, self.intervals):
                    source.data = {
                        k: np.asarray(v) * (1 if k == "x" else ratio)
                        for k, v in source.data.items()
                    }
                self.unit = unit
            for source, columns in (
                (self.source, cols.asymmetry_columns),
                (self.regressed, cols.regressed_columns),
            ):
                new = columns(snapshots, run.start, self.unit)
                if len(new["x"]):
                    source.stream(new, rollover=ROLLOVER)
            new = self._interval_columns(run, snapshots)
            if len(new["x"]):
                self.intervals.stream(new, rollover=ROLLOVER)
        if not (reset or snapshots):
            return
        self.plot.yaxis.axis_label = f"{label(run.mode)} ({self.unit.name})"
        self.expected.location = (self.expected_value or 0.0) * self.unit.scale
        self._update_band()
        self._fit()

    def _interval_columns(self, run: RunInfo, snapshots: Sequence[Snapshot]) -> dict:
        """Per-interval points of the intervals ``snapshots`` close (and move the opener)."""
        usable = [s for s in snapshots if s.value is not None and s.error]
        opened = run.start if self.interval_opener is None else self.interval_opener.time
        edges = cols.bin_edges(usable, opened, cols.INTERVAL_SECONDS)
        new = cols.interval_columns(self.interval_opener, edges, run.start, self.unit)
        if edges:
            self.interval_opener = edges[-1]
        return new

    def _show_kind(self) -> None:
        """Cumulative points (with band and newest point) or independent per-interval ones,
        as the toggle says; the title names which."""
        per_interval = self.per_interval.active
        for glyph in self.cumulative_glyphs:
            glyph.visible = not per_interval
        for glyph in self.interval_glyphs:
            glyph.visible = per_interval
        for item in self.plot.legend.items:  # the legend lists what is shown
            item.visible = any(r.visible for r in item.renderers)
        run = "" if self.run_number is None else f", run {self.run_number}"
        if per_interval:
            self.plot.title.text = (
                f"{self.mode_label} per {cols.INTERVAL_SECONDS:.0f} s (each point its own data)"
                f"{run}"
            )
        else:
            self.plot.title.text = (
                f"Running {self.mode_label} (cumulative){run} (band: mean ± σ now{self.title_key})"
            )
        self._fit()

    def show_live(self, run: RunInfo, live: LiveResult | None) -> None:
        """Show ``live``, the monitor's newest result between database snapshots, as the
        plot's newest point; nothing for another run, a run not running, or a result no
        newer than the newest snapshot."""
        x = np.asarray(self.source.data["x"], dtype=float)
        if live is None or live.run != run.number or run.state != "running":
            if len(self.live.data["x"]):
                self.live.data = _empty(cols.ASYMMETRY_KEYS)
            return
        seconds = (live.time - run.start).total_seconds()
        shown = self.live.data["x"]
        if (len(x) and seconds <= x[-1]) or (len(shown) and seconds <= shown[0]):
            return
        y, e = live.value * self.unit.scale, live.error * self.unit.scale
        self.live.data = {"x": [seconds], "y": [y], "lo": [y - e], "hi": [y + e]}

    def _unit(self, snapshots: Sequence[Snapshot], current: Unit | None) -> Unit:
        newest = next((s for s in reversed(snapshots) if s.value is not None), None)
        if newest is None:
            return current or PPM
        size = magnitude([newest.value, newest.error, self.expected_value])
        return choose_unit(size, current)

    def _update_band(self) -> None:
        """Cumulative mean ± σ (the newest point) across the plotted time span."""
        data = self.source.data
        if len(data["x"]) == 0:
            self.band.data = _empty(("x", "lower", "upper"))
            return
        self.band.data = {
            "x": np.array([data["x"][0], data["x"][-1]], dtype=float),
            "lower": np.full(2, data["lo"][-1], dtype=float),
            "upper": np.full(2, data["hi"][-1], dtype=float),
        }

    def _fit(self) -> None:
        if not self.follow.active:
            return
        shown = self.intervals if self.per_interval.active else self.source
        x, lo, hi = (np.asarray(shown.data[k], dtype=float) for k in ("x", "lo", "hi"))
        keep = settled(x, SETTLED_FRACTION)
        lines = [0.0, self.expected.location if self.expected.visible else None]
        start, end = y_range(lo[keep], hi[keep], lines)
        if (self.y_range.start, self.y_range.end) != (start, end):
            self.y_range.update(start=start, end=end)


class BeamPanel:
    """The helicity-correlated beam: each variable's running difference ± error and width
    (nm, nrad, ppb), and how far the regression moves the asymmetry, in raw errors."""

    def __init__(self) -> None:
        self.shown: tuple = ()
        self.source = ColumnDataSource(
            cols.beam_difference_columns(()), name="beam_difference_source"
        )
        number = NumberFormatter(format="0.0", nan_format="–")
        pull = NumberFormatter(format="+0.0", nan_format="–")
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(
                    field="variable", title="variable", formatter=StringFormatter(), width=60
                ),
                TableColumn(
                    field="shown",
                    title="difference ± error",
                    formatter=StringFormatter(),
                    width=140,
                ),
                TableColumn(field="width", title="width", formatter=number, width=70),
                TableColumn(field="unit", title="unit", formatter=StringFormatter(), width=50),
                TableColumn(field="pull", title="diff / error", formatter=pull, width=80),
            ],
            height=170,
            width=440,
            index_position=None,
            name="beam_difference_table",
        )
        self.correction = Div(name="regression_correction", width=440)
        self.layout = column(
            Div(text="<b>Helicity-correlated beam</b> ((mean+ − mean−)/2 at the target)"),
            self.table,
            self.correction,
        )

    def apply(
        self,
        differences: tuple[BeamDifference, ...],
        raw: Channel | None,
        regressed: Channel | None,
    ) -> None:
        if (differences, raw, regressed) == self.shown:
            return
        self.shown = (differences, raw, regressed)
        self.source.data = cols.beam_difference_columns(differences)
        self.correction.text = correction_html(raw, regressed)


def correction_html(raw: Channel | None, regressed: Channel | None) -> str:
    """The regression's correction in raw errors, or why there is none."""
    if raw is None or regressed is None or raw.value is None or regressed.value is None:
        return "regression: <i>none yet (no beam monitors, or no minirun regressed)</i>"
    if not raw.error:
        return "regression: <i>no raw error yet</i>"
    shift = (raw.value - regressed.value) / raw.error
    colour = "#c00000" if abs(shift) >= 5 else ("#b07800" if abs(shift) >= 3 else "inherit")
    return (
        f"regression moves the asymmetry by <b style='color:{colour}'>{shift:+.1f} σ</b>"
        " (raw − regressed, in raw errors)"
    )


class BeamStrip:
    """Strip charts of the last ten minutes: window rates binned to
    :data:`~mupnc.dashboards.columns.RATE_BIN_SECONDS` (decoded wide and pale under good, so
    neither hides the other; bins above the axis — a catch-up burst — flagged at its top
    with their rate), the muon rate from slow-control samples (right axis, when archived)
    and the beam charge asymmetry, running, with the charge feedback's input over each of
    its windows (error bars) when the loop decides."""

    def __init__(self) -> None:
        self.unit = PPM
        self.rate_opener: Snapshot | None = None
        """The snapshot that opened the rate bin being filled (None before the first)."""
        self.input_size = 0.0
        """Size of the newest charge feedback input (fraction; 0: none)."""
        self.newest_charge: float | None = None
        """The newest running A_Q (fraction)."""
        self.source = ColumnDataSource(_empty(cols.CHARGE_KEYS), name="beam_source")
        self.rates = ColumnDataSource(_empty(cols.RATE_KEYS), name="window_rate_source")
        self.flags = ColumnDataSource(_empty(("x", "y", "text")), name="rate_outlier_source")
        self.muons = ColumnDataSource(_empty(cols.SAMPLE_KEYS), name="muon_rate_source")
        x_range = DataRange1d(follow="end", follow_interval=STRIP_WINDOW, range_padding=0)
        common = dict(height=190, sizing_mode="stretch_width", tools=TOOLS, x_range=x_range)
        self.rate_range = Range1d(0, 1, name="window_rate_range")
        self.rate = figure(
            title=f"Beam: helicity window rate (per {cols.RATE_BIN_SECONDS:.0f} s)",
            y_axis_label="rate (Hz)",
            y_range=self.rate_range,
            name="window_rate_plot",
            **common,
        )
        self.rate.line(
            "x", "window_rate", source=self.rates, color="navy", line_width=6, line_alpha=0.3,
            legend_label="decoded",
        )  # fmt: skip
        self.rate.line(
            "x", "good_rate", source=self.rates, color="green", line_width=1.5,
            legend_label="good",
        )  # fmt: skip
        self.rate.scatter(
            "x", "y", source=self.flags, marker="triangle", size=10, color="#c00000",
            legend_label="above the axis",
        )  # fmt: skip
        self.rate.add_layout(
            LabelSet(
                x="x", y="y", text="text", source=self.flags, x_offset=6, y_offset=-14,
                text_font_size="9pt", text_color="#c00000",
            )
        )  # fmt: skip
        self.rate.extra_y_ranges = {"muons": DataRange1d(renderers=[])}
        self.rate.add_layout(
            LinearAxis(y_range_name="muons", axis_label="muon rate (MHz)"), "right"
        )
        muons = self.rate.line(
            "x",
            "value",
            source=self.muons,
            y_range_name="muons",
            color="orange",
            line_dash="dashed",
            legend_label="muons (MHz)",
        )
        self.rate.extra_y_ranges["muons"].renderers = [muons]
        self.rate.legend.location = "top_left"
        self.rate.legend.orientation = "horizontal"
        self.rate.legend.background_fill_alpha = 0.6
        self.charge = figure(
            title="Beam charge asymmetry (running)",
            x_axis_label="time since run start (s)",
            y_axis_label="A_Q (ppm)",
            name="charge_strip_plot",
            **common,
        )
        self.charge.add_layout(Span(location=0, dimension="width", line_color="black"))
        self.charge.line(
            "x", "charge", source=self.source, color="purple", legend_label="running A_Q"
        )
        self.feedback = ColumnDataSource(_empty(cols.ASYMMETRY_KEYS), name="feedback_input_source")
        self.charge.add_layout(whisker(self.feedback, "darkorange"))
        self.charge.scatter(
            "x", "y", source=self.feedback, size=6, color="darkorange",
            legend_label="charge feedback input (per window)",
        )  # fmt: skip
        self.charge.legend.location = "top_right"
        self.charge.legend.background_fill_alpha = 0.6
        self.charge.legend.visible = False  # until the charge loop decides
        self.layout = column(self.rate, self.charge, sizing_mode="stretch_width")

    def apply(
        self,
        run: RunInfo,
        snapshots: Sequence[Snapshot],
        samples: Sequence[Sample],
        reset: bool,
        decisions: Sequence[FeedbackDecision] = (),
    ) -> None:
        """Reset for a new run or stream ``snapshots``, ``samples`` and the charge loop's
        ``decisions`` (their inputs); rescale if the unit of A_Q changes (it reads the
        newest running A_Q and the newest input)."""
        if reset:
            self.rate_opener, self.newest_charge = None, None
            self.input_size = 0.0
            self.source.data = _empty(cols.CHARGE_KEYS)
            self.rates.data = _empty(cols.RATE_KEYS)
            self.feedback.data = _empty(cols.ASYMMETRY_KEYS)
            self.muons.data = cols.sample_columns(samples, run.start, 1e-6)
        elif samples:
            self.muons.stream(cols.sample_columns(samples, run.start, 1e-6), rollover=ROLLOVER)
        size = cols.charge_input_size(decisions)
        if size is not None:
            self.input_size = size
        if snapshots:
            self.newest_charge = snapshots[-1].charge_asymmetry
        if snapshots or size is not None:
            self._choose_unit(self.newest_charge)
        if snapshots:
            self.source.stream(cols.charge_columns(snapshots, run.start, self.unit), ROLLOVER)
            self._bin_rates(run, snapshots)
        inputs = cols.feedback_input_columns(decisions, run.start, self.unit)
        if len(inputs["x"]):
            self.feedback.stream(inputs, rollover=ROLLOVER)
        self.charge.legend.visible = len(self.feedback.data["x"]) > 0

    def _bin_rates(self, run: RunInfo, snapshots: Sequence[Snapshot]) -> None:
        """Stream the rate bins ``snapshots`` close; the axis to :data:`RATE_HEADROOM` × the
        median decoded rate shown, the bins above it flagged."""
        opener = self.rate_opener or snapshots[0]
        edges = cols.bin_edges(snapshots, opener.time, cols.RATE_BIN_SECONDS)
        if not edges:
            self.rate_opener = opener
            return
        self.rate_opener = edges[-1]
        self.rates.stream(cols.rate_columns([opener, *edges], run.start, run.pattern_windows),
                          rollover=ROLLOVER)  # fmt: skip
        x = np.asarray(self.rates.data["x"], dtype=float)
        decoded = np.asarray(self.rates.data["window_rate"], dtype=float)
        typical = decoded[np.isfinite(decoded) & (decoded > 0)]
        if typical.size:
            top = RATE_HEADROOM * float(np.median(typical))
            self.rate_range.update(start=0, end=top)
            flags = cols.outlier_columns(x, decoded, top)
            if flags["x"] or len(self.flags.data["x"]):
                self.flags.data = flags

    def _choose_unit(self, charge: float | None) -> None:
        """Rescale the charge plot if the running A_Q and the feedback input read better in
        another unit."""
        size = magnitude([charge, self.input_size])
        unit = choose_unit(size, self.unit) if size else self.unit
        if unit == self.unit:
            return
        ratio = unit.scale / self.unit.scale
        data = dict(self.source.data)
        data["charge"] = np.asarray(data["charge"]) * ratio
        self.source.data = data
        self.feedback.data = {
            k: np.asarray(v) * (1 if k == "x" else ratio) for k, v in self.feedback.data.items()
        }
        self.unit = unit
        self.charge.yaxis.axis_label = f"A_Q ({unit.name})"


CHANNEL_ROW_HEIGHT, CHANNEL_HEADER_HEIGHT = 25, 30
"""Pixels of a table row and of its header (BokehJS' defaults)."""
CHANNEL_ROWS_SHOWN = 24
"""The channel table grows with the channels up to this many rows (every shipped map's
channels and results fit); a larger map scrolls."""


def table_height(rows: int, most: int = CHANNEL_ROWS_SHOWN) -> int:
    """Pixels of a table that shows ``rows`` rows (at least one, at most ``most``) whole."""
    return CHANNEL_HEADER_HEIGHT + CHANNEL_ROW_HEIGHT * max(1, min(rows, most)) + 2


class ChannelTable:
    """Per-channel cumulative asymmetries ``value ± error`` rounded to the error, and the
    pull; pull cells coloured (amber from 2σ, red from 3σ).  The table is as tall as its
    rows, so it needs no scrolling."""

    def __init__(self) -> None:
        self.unit = PPM
        self.shown: tuple = ()
        self.source = ColumnDataSource(cols.channel_columns([], {}, PPM), name="channel_source")
        self.value = TableColumn(
            field="shown", title="A ± σ (ppm)", formatter=StringFormatter(), width=150
        )
        pull = NumberFormatter(format="+0.00", nan_format="–", background_color="colour")
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(
                    field="channel", title="channel", formatter=StringFormatter(), width=110
                ),
                TableColumn(field="role", title="role", formatter=StringFormatter(), width=70),
                self.value,
                TableColumn(field="pull", title="pull (σ)", formatter=pull, width=60),
            ],
            height=table_height(0),
            sizing_mode="stretch_width",
            index_position=None,
            name="channel_table",
        )
        self.title = Div(
            text="<b>Channels</b> (cumulative; pull: against the combined asymmetry × sign"
            " × A_LR shape)"
        )
        self.layout = column(self.title, self.table, sizing_mode="stretch_width")

    def apply(self, run: RunInfo, channels: tuple[Channel, ...]) -> None:
        if (channels, run.roles, run.shape) == self.shown:
            return
        self.shown = (channels, run.roles, run.shape)
        self.unit = choose_unit(magnitude(c.error for c in channels), self.unit)
        self.value.title = f"A ± σ ({self.unit.name})"
        self.source.data = cols.channel_columns(
            channels, dict(run.roles), self.unit, dict(run.shape)
        )
        height = table_height(len(channels))
        if self.table.height != height:
            self.table.height = height


class PullHistogram:
    """Pulls of the completed minirun means about their weighted mean, with a unit Gaussian."""

    def __init__(self) -> None:
        self.shown: tuple[MinirunMean, ...] | None = None
        self.bars = ColumnDataSource(
            {"left": PULL_EDGES[:-1], "right": PULL_EDGES[1:], "top": pull_histogram(np.empty(0))},
            name="pull_bars",
        )
        fine = np.linspace(PULL_EDGES[0], PULL_EDGES[-1], 201)
        self.gauss = ColumnDataSource({"x": fine, "y": np.zeros_like(fine)}, name="pull_gauss")
        self.plot = figure(
            title="Minirun pulls: no completed minirun yet",
            x_axis_label="pull (A_i − ⟨A⟩)/σ",
            y_axis_label="miniruns",
            x_range=(PULL_EDGES[0], PULL_EDGES[-1]),
            y_range=DataRange1d(start=0),
            height=260,
            sizing_mode="stretch_width",
            tools="save",
            name="pull_plot",
        )
        self.plot.quad(left="left", right="right", top="top", bottom=0, source=self.bars, alpha=0.6)
        self.plot.line("x", "y", source=self.gauss, color="red", legend_label="unit Gaussian")
        self.plot.legend.location = "top_right"

    def apply(self, miniruns: Sequence[MinirunMean], running: bool, pending: str = "") -> None:
        """Show the pulls of the completed ``miniruns``; with fewer than two, the title says
        ``pending`` (why and for how long: :func:`~mupnc.dashboards.columns.pending_text`)."""
        done = tuple(cols.completed_miniruns(miniruns, running))
        if len(done) < 2:
            self.plot.title.text = f"Minirun pulls: {pending or 'fewer than two complete miniruns'}"
        if done == self.shown:
            return
        self.shown = done
        values = np.array([np.nan if m.value is None else m.value for m in done], dtype=float)
        errors = np.array([np.nan if m.error is None else m.error for m in done], dtype=float)
        pull = minirun_pulls(values, errors)
        counts = pull_histogram(pull)
        self.bars.patch({"top": [(slice(0, len(counts)), counts)]})
        fine = np.asarray(self.gauss.data["x"])
        width = float(PULL_EDGES[1] - PULL_EDGES[0])
        self.gauss.data = {"x": fine, "y": unit_gaussian(fine, len(pull), width)}
        if len(pull):
            self.plot.title.text = (
                f"Minirun pulls: {len(pull)} miniruns, "
                f"mean {pull.mean():+.2f}, RMS {pull.std():.2f}"
            )
        elif len(done) >= 2:
            self.plot.title.text = "Minirun pulls: no two complete miniruns with an error"


ROTATOR_STATES = ("PLUS", "MINUS", "RAMPING", "FAULT")
"""Index order of the IOC's HEL:ROTATOR:STATE enum (archived as the state index)."""


def reversal_html(run: RunInfo, rotator: Sequence[Sample]) -> str:
    """The spin reversal as its scheme works (:mod:`mupnc.daq.scheme`).

    fast: the helicity board's pseudo-random patterns, their shape and reporting delay (a
    spin rotator, if one is archived, plays no part and is not shown); slow: the rotator's
    state, setpoint and readback (+1/−1), the reversal interval and its settle time; kick:
    the kick's spin state and its turn number (setpoint and readback) among the turns it
    alternates between."""
    if run.scheme == "fast":
        delay = "?" if run.delay_patterns is None else f"{run.delay_patterns}"
        return (
            f"<br><b>Helicity board</b> (fast reversal): pseudo-random {html.escape(run.pattern)}"
            f" patterns, reported {delay} patterns late"
        )
    values = {s.pv: s.value for s in rotator}
    index = values.get("HEL:ROTATOR:STATE")
    known = index is not None and 0 <= index < len(ROTATOR_STATES)
    state = ROTATOR_STATES[int(index)] if known and index is not None else "not archived"
    colour = {"FAULT": "#c00000", "RAMPING": "#b36b00"}.get(state, "#1a7f1a" if known else "#555")
    shown = f"<span style='color:{colour};font-weight:bold'>{state}</span>"
    interval = "?" if run.flip_period is None else f"{run.flip_period:g} s"
    settle = "?" if run.settle_time is None else f"{run.settle_time:g} s"

    def number(name: str, unit: str = "") -> str:
        value = values.get(name)
        return "?" if value is None else f"{value:+g}{unit}"

    if run.scheme == "kick":
        turns = ", ".join(str(t) for t in run.kick_turns) or "?"
        return (
            f"<br><b>Kick</b> (spin precessing between kicks): {shown}, turn number setpoint"
            f" {number('HEL:ROTATOR:SP')}, readback {number('HEL:ROTATOR:RBV')}"
            f" (alternating turns {turns}; interval {interval})"
        )
    return (
        f"<br><b>Spin rotator</b> (slow reversal): {shown} (setpoint"
        f" {number('HEL:ROTATOR:SP')}, readback {number('HEL:ROTATOR:RBV')});"
        f" flips every {interval}, settles in {settle}"
    )


class HelicityPanel:
    """Decoder lock, pattern settings and the helicity error counters by kind
    (:data:`mupnc.monitor.decoding.stream.ERROR_KINDS`, all of which must stay zero)."""

    def __init__(self) -> None:
        self.state = Div(name="helicity_state", sizing_mode="stretch_width")
        self.source = ColumnDataSource(
            {
                "kind": list(ERROR_KINDS),
                "count": [0] * len(ERROR_KINDS),
                "colour": ["white"] * len(ERROR_KINDS),
            },
            name="helicity_errors",
        )
        count = NumberFormatter(format="0,0", background_color="colour")
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(field="kind", title="helicity errors (must be zero)"),
                TableColumn(field="count", title="count", formatter=count),
            ],
            height=30 + 25 * len(ERROR_KINDS),
            sizing_mode="stretch_width",
            index_position=None,
        )
        self.shown: tuple = ()
        self.layout = column(self.state, self.table, sizing_mode="stretch_width")

    def apply(
        self,
        run: RunInfo,
        previous: Snapshot | None,
        latest: Snapshot | None,
        errors,
        rotator: Sequence[Sample] = (),
    ):
        state = cols.decoder_state(previous, latest, run.state)
        colour = DECODER_COLOURS.get(state.split(" · ")[0], "#555")
        rate = f"{run.window_rate:g} Hz" if run.window_rate else "?"
        self.state.text = (
            f"<b>Helicity decoder:</b> <span style='color:{colour};font-weight:bold'>"
            f"{html.escape(state)}</span><br>spin reversal {html.escape(run.scheme)}, "
            f"window rate {rate}{reversal_html(run, rotator)}"
        )
        counts = dict.fromkeys(ERROR_KINDS, 0) | dict(errors)
        if tuple(counts.items()) == self.shown:
            return
        self.shown = tuple(counts.items())
        self.source.data = {
            "kind": list(counts),
            "count": list(counts.values()),
            "colour": ["#ffb0b0" if n else "#c8efc8" for n in counts.values()],
        }
