"""Shifter page: the newest run, live.

Each browser session streams what its :class:`~mupnc.dashboards.feed.Feed` cursor has not seen from
a 1 s periodic callback inside ``doc.hold("combine")``.  Layout, top to bottom: status strip
(feeds, server connection), alarm banner, running asymmetry beside the result box, channels /
pull histogram / helicity state, the alarm table, beam strip charts beside the
helicity-correlated beam differences and the run information, the measured polarization,
the feedback loops and the beam modulation (one line each when the run has none).
"""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import CustomJS, Div

from mupnc.dashboards.alarm_panel import AlarmPanel
from mupnc.dashboards.columns import (
    CHI2_MINIRUNS,
    PULL_MINIRUNS,
    chi2_miniruns,
    good_beam_seconds,
    pending_text,
)
from mupnc.dashboards.display import (
    BEAM_COLOURS,
    IDLE,
    LIVE,
    LOST,
    NO_DATA,
    STALE,
    beam_state,
    choose_unit,
    format_age,
    format_asymmetry,
    format_duration,
    format_rate,
    freshness,
    magnitude,
    run_is_live,
)
from mupnc.dashboards.feed import Feed, Update
from mupnc.dashboards.feedback_panel import FeedbackPanel
from mupnc.dashboards.live_results import LiveResult, ResultFollower
from mupnc.dashboards.modulation_panel import ModulationPanel
from mupnc.dashboards.panels import (
    AsymmetryPlot,
    BeamPanel,
    BeamStrip,
    ChannelTable,
    HelicityPanel,
    PullHistogram,
    label,
)
from mupnc.dashboards.polarization_panel import PolarizationPanel
from mupnc.dashboards.projection import basis, describe, project
from mupnc.dashboards.records import COMBINED, RunInfo, Sample, Snapshot

PERIOD_MS = 1000
LIVE_PERIOD_MS = 250
"""How often a session looks at the monitor's newest result (the monitor updates it four
times a second, :mod:`mupnc.dashboards.live_results`); only a newer one is sent."""
DATABASE_STALE, DATABASE_LOST = 5.0, 15.0
"""Seconds since the database last answered before its feed shows stale / lost."""
MONITOR_STALE, MONITOR_LOST = 5.0, 30.0
"""Seconds since the monitor's newest snapshot before its feed shows stale / lost."""
SLOW_STALE, SLOW_LOST = 30.0, 300.0
"""Seconds since the newest beam-rate slow-control sample before it shows stale / lost
(archivers write on change, so a steady beam is quieter than the monitor)."""
STATE_COLOURS = {LIVE: "#1a7f1a", STALE: "#b07800", LOST: "#c00000", NO_DATA: "#777", IDLE: "#777"}
BADGE = "display:inline-block;padding:2px 8px;margin-right:8px;border-radius:4px;color:white;"
DISCONNECTED_JS = """
banner.text = 'DISCONNECTED from the dashboard server: the values below are frozen. '
    + 'The page reconnects by itself when the server is back; reload it if this stays.';
banner.visible = true;
"""
"""The page's one disconnect message (Bokeh's own notification is turned off)."""
RECONNECTED_JS = "banner.visible = false;"


def badge(name: str, state: str, detail: str) -> str:
    """A coloured status badge: ``name: STATE · detail``; state and detail are escaped."""
    colour = STATE_COLOURS.get(state, "#777")
    text = f"{name}: {html.escape(state.upper())}" + (f" · {html.escape(detail)}" if detail else "")
    return f"<span style='{BADGE}background:{colour}'>{text}</span>"


def status_html(update: Update, now: datetime, analysed: datetime | None = None) -> str:
    """Badges for the database, the monitor's snapshots and the slow-control samples (IDLE
    while no run is live: no monitor archives them then).

    The monitor is LIVE only while it analyses windows: ``analysed`` is the time of the
    newest snapshot whose decoded windows grew (None: not known, the snapshot's own time);
    fresh snapshots without new windows (the decoder holding them, or no data) age it."""
    db_age = None if update.polled is None else (now - update.polled).total_seconds()
    db_state = LOST if update.poll_error else freshness(db_age, DATABASE_STALE, DATABASE_LOST)
    db_detail = update.poll_error or f"read {format_age(db_age)}"
    run, latest = update.run, update.latest
    snap_age = None if latest is None else (now - latest.time).total_seconds()
    if run is not None and run.state in ("ended", "aborted"):
        mon_state, mon_detail = f"run {run.state}", f"last result {format_age(snap_age)}"
    else:
        mon_state = freshness(snap_age, MONITOR_STALE, MONITOR_LOST)
        mon_detail = f"last result {format_age(snap_age)}"
        if mon_state == LOST and run is not None:
            mon_detail += f"; run {run.number} still open (mupnc runs, mupnc run close)"
        if analysed is not None and latest is not None and analysed < latest.time:
            window_age = (now - analysed).total_seconds()
            if window_age >= MONITOR_STALE and mon_state == LIVE:
                mon_state = STALE
                mon_detail = f"no window analysed for {format_duration(window_age)}"
    sample = update.latest_sample
    slow_age = None if sample is None else (now - sample.time).total_seconds()
    slow_state = freshness(slow_age, SLOW_STALE, SLOW_LOST)
    slow_detail = "none archived" if sample is None else f"last sample {format_age(slow_age)}"
    if not run_is_live(None if run is None else run.state):
        # nothing archives the slow controls without a run: quiet is expected, not stale
        slow_state, slow_detail = (
            IDLE,
            "no run live" + ("" if sample is None else f"; last sample {format_age(slow_age)}"),
        )
    return (
        badge("database", db_state, db_detail)
        + badge("monitor", mon_state, mon_detail)
        + badge("slow controls", slow_state, slow_detail)
    )


BEAM_STATE_NAMES = {"on": "ON", "off": "OFF", "tripped": "TRIPPED", "unknown": "UNKNOWN"}


def beam_html(update: Update, now: datetime) -> str:
    """The beam state badge (ON, OFF, TRIPPED from the archived ``BEAM:ON`` and
    ``BEAM:TRIP``; :func:`~mupnc.dashboards.display.beam_state`) with the *measured* muon
    rate (the newest ``BEAM:RATE`` sample) beside its setpoint; "last known" while no run
    is live (nothing archives the beam then)."""
    values = {s.pv: s.value for s in update.beam_state}
    state = beam_state(values.get("BEAM:ON"), values.get("BEAM:TRIP"))
    sample = update.latest_sample
    measured = None if sample is None else sample.value
    setpoint = values.get("BEAM:RATE_SP")
    if setpoint is None and update.run is not None:
        setpoint = update.run.muon_rate
    detail = f"measured {format_rate(measured)}"
    if sample is not None:
        detail += f" {format_age((now - sample.time).total_seconds())}"
    detail += f" (setpoint {format_rate(setpoint)})"
    if state == "unknown":
        detail = "BEAM:ON and BEAM:TRIP not archived; " + detail
    if not run_is_live(None if update.run is None else update.run.state):
        detail = "last known, no run live; " + detail
    colour = BEAM_COLOURS.get(state, "#777")
    text = f"beam: {BEAM_STATE_NAMES[state]} · {html.escape(detail)}"
    return f"<span style='{BADGE}background:{colour};font-size:16px'>{text}</span>"


ESTIMATOR_TEXT = {
    "counting": "counting: counts summed per spin state, Poisson errors",
    "integrating": "integrating: per-pattern yields, error from their spread",
}


def _row(key: str, value: str) -> str:
    return f"<tr><th style='text-align:left;padding-right:12px'>{key}</th><td>{value}</td></tr>"


def result_html(update: Update, now: datetime) -> str:
    """The result box: A ± σ_stat, χ²/ndf, good patterns and beam time, projection, blinding."""
    run, latest = update.run, update.latest
    if run is None:
        return "<b>No run in the database yet.</b>"
    combined = next((c for c in update.channels if c.name == COMBINED), None)
    value = error = chi2 = estimator = None
    if combined is not None:
        value, error, chi2 = combined.value, combined.error, combined.chi2_ndf
        estimator = combined.estimator
    elif latest is not None:
        value, error = latest.value, latest.error
    name = label(run.mode)
    unit = choose_unit(magnitude([value, error]))
    head = f"<div style='font-size:22px;font-weight:bold'>{name} = "
    head += f"{format_asymmetry(value, error, unit)}</div>"
    if run.blinded:
        head = (
            "<div style='background:#000;color:#ffd700;font-size:20px;font-weight:bold;"
            "padding:4px 10px;text-align:center;letter-spacing:4px'>BLINDED</div>"
            + head.replace(" = ", " (blinded) = ")
        )
    rows = []
    if value is not None and error and not run.blinded:
        rows.append(_row("significance", f"{abs(value) / error:.1f} σ from zero"))
    regressed = update.regressed
    if regressed is not None:
        text = format_asymmetry(regressed.value, regressed.error, unit)
        rows.append(_row("regressed", text + " (beam differences corrected)"))
    measured = update.polarization
    if measured is not None:
        p = measured.run
        shown = "undefined" if p.effective is None else f"{p.effective:.3f}"
        configured = "?" if run.polarization is None else f"{run.polarization:.2f}"
        rows.append(_row("polarization", f"{shown} measured (configured {configured})"))
    dithered = update.dithered
    if dithered is not None:
        text = format_asymmetry(dithered.value, dithered.error, unit)
        rows.append(_row("dithered", text + " (corrected with the coils' sensitivities)"))
    rows.append(
        _row(
            "χ²/ndf (miniruns)",
            pending_text(run, update.miniruns, latest, CHI2_MINIRUNS)
            if chi2 is None
            else f"{chi2:.2f} ({chi2_miniruns(run, update.miniruns)})",
        )
    )
    if latest is not None:
        beam = good_beam_seconds(run, latest.patterns_good)
        rows += [
            _row("good patterns", f"{latest.patterns_good:,}"),
            _row("good-beam time", "?" if beam is None else format_duration(beam)),
            _row("windows / lost", f"{latest.windows:,} / {latest.lost_windows:,}"),
        ]
        elapsed = (latest.time - run.start).total_seconds()
        # a blinded run's projection uses only what the page shows: no injected value
        measured = run.blinded or run.expected is None
        target = value if measured else run.expected
        of = "the injected value" if not measured else "the measured value"
        of = "the measured, blinded value" if run.blinded else of
        rows.append(_row("projection", describe(project(elapsed, error, target))))
        rows.append(_row("", f"<small>{basis(elapsed, error, target, of, unit)}</small>"))
    else:
        rows.append(_row("projection", describe(None)))
    if run.expected is not None and not run.blinded:
        rows.append(_row("injected", f"{run.expected * unit.scale:.4g} {unit.name}"))
    if estimator is not None:
        rows.append(_row("estimator", ESTIMATOR_TEXT.get(estimator, estimator)))
    age = None if latest is None else (now - latest.time).total_seconds()
    rows.append(_row("last update", format_age(age)))
    return head + f"<table>{''.join(rows)}</table>"


def run_html(run: RunInfo | None, now: datetime, measured: Sample | None = None) -> str:
    """Run information: number, state, source, start, duration and beam settings: the
    muon rate the run was set up with (a setpoint) and the ``measured`` one (the newest
    beam-rate sample), each named as what it is."""
    if run is None:
        return "<b>Run</b>: none yet"
    end = run.end or now
    items = [
        ("run", f"{run.number} ({html.escape(run.origin)}, {label(run.mode)})"),
        ("state", html.escape(run.state)),
        ("start", run.start.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("duration", format_duration((end - run.start).total_seconds())),
        ("polarization", "?" if run.polarization is None else f"{run.polarization:.2f}"),
        ("muon rate setpoint", f"{format_rate(run.muon_rate)} (at the run's start)"),
    ]
    if measured is not None:
        items.append(("measured muon rate", f"{format_rate(measured.value)} ({measured.pv})"))
    if run.efficiency:
        items.append(("efficiency", efficiency_text(run.efficiency, run.planner_efficiency)))
    return "<b>Run information</b><table>" + "".join(_row(k, v) for k, v in items) + "</table>"


def efficiency_text(declared: float, planner: float | None) -> str:
    """Signal counts per muon of the run's channel map beside the planner's, with the
    factor between them (a demo's detector counts far more per muon than a real one, which
    is why it reaches 5 sigma in minutes where ``mupnc plan`` says days)."""
    text = f"{declared:.2g} counts per muon (channel map)"
    if planner:
        ratio = declared / planner
        text += f"; <code>mupnc plan</code> assumes {planner:.2g}: the same σ takes "
        text += f"{ratio:.2g}× longer" if ratio >= 1 else f"{1 / ratio:.2g}× less time"
        text += " there"
    return text


class LiveView:
    """The models of one session's shifter page."""

    def __init__(self, feed: Feed) -> None:
        self.shown_run: RunInfo | None = None
        self.header = Div(
            text="<b style='font-size:18px'>mupnc shifter</b> · <a href='/history'>run history</a>",
            sizing_mode="stretch_width",
        )
        self.status = Div(name="status", sizing_mode="stretch_width")
        self.beam_state = Div(name="beam_state", sizing_mode="stretch_width")
        self.disconnected = Div(
            name="disconnected",
            visible=False,
            styles={
                "background": "#c00000",
                "color": "white",
                "padding": "6px",
                "font-weight": "bold",
            },
            sizing_mode="stretch_width",
        )
        self.asymmetry = AsymmetryPlot()
        self.beam = BeamStrip()
        self.beam_differences = BeamPanel()
        self.channels = ChannelTable()
        self.pulls = PullHistogram()
        self.helicity = HelicityPanel()
        self.alarms = AlarmPanel(feed)
        self.feedback = FeedbackPanel()
        self.modulation = ModulationPanel()
        self.polarization = PolarizationPanel()
        self.box = Div(name="result_box", width=360)
        self.run = Div(name="run_info", width=360)
        self.previous: Snapshot | None = None
        self.latest: Snapshot | None = None
        self.analysed: datetime | None = None
        """Time of the newest snapshot whose decoded windows grew."""
        self.last_windows: int | None = None
        self.layout = column(
            self.disconnected,
            row(self.header, self.status, sizing_mode="stretch_width"),
            self.beam_state,
            self.alarms.banner,
            row(
                column(self.asymmetry.plot, self.asymmetry.buttons, sizing_mode="stretch_width"),
                self.box,
                sizing_mode="stretch_width",
            ),
            row(
                self.channels.layout,
                self.pulls.plot,
                self.helicity.layout,
                sizing_mode="stretch_width",
            ),
            self.alarms.layout,
            row(
                self.beam.layout,
                column(self.beam_differences.layout, self.run),
                sizing_mode="stretch_width",
            ),
            self.polarization.layout,
            self.feedback.layout,
            self.modulation.layout,
            sizing_mode="stretch_width",
        )

    def _track_analysis(self, update: Update) -> None:
        """Keep :attr:`analysed`: the time of the newest snapshot whose windows grew."""
        if update.reset or update.run is None:
            self.analysed, self.last_windows = None, None
        for snapshot in update.snapshots:
            if self.last_windows is None or snapshot.windows > self.last_windows:
                self.analysed = snapshot.time
            self.last_windows = snapshot.windows

    def show_live(self, live: LiveResult | None) -> None:
        """The monitor's newest result on the running plot, for the run shown."""
        if self.shown_run is not None:
            self.asymmetry.show_live(self.shown_run, live)

    def apply(self, update: Update, now: datetime) -> None:
        """Show ``update``: reset on a new run, stream new points, refresh boxes and tables."""
        run = self.shown_run = update.run
        self._track_analysis(update)
        self.status.text = status_html(update, now, self.analysed)
        self.beam_state.text = beam_html(update, now)
        self.alarms.apply(update.alarms, now)
        self.run.text = run_html(run, now, update.latest_sample)
        if run is None:
            self.box.text = result_html(update, now)
            return
        if update.reset:
            self.previous = self.latest = None
        if update.snapshots:
            before = update.snapshots[-2] if len(update.snapshots) > 1 else self.latest
            self.previous, self.latest = before, update.snapshots[-1]
        self.asymmetry.apply(run, update.snapshots, update.reset)
        self.beam.apply(run, update.snapshots, update.samples, update.reset, update.decisions)
        self.feedback.apply(run, update.feedback, update.decisions, update.reset)
        self.modulation.apply(update.modulation)
        self.polarization.apply(update.polarization)
        self.channels.apply(run, update.channels)
        raw = next((c for c in update.channels if c.name == COMBINED), None)
        self.beam_differences.apply(update.beam, raw, update.regressed)
        self.pulls.apply(
            update.miniruns,
            run.state == "running",
            pending_text(run, update.miniruns, self.latest, PULL_MINIRUNS),
        )
        self.helicity.apply(run, self.previous, self.latest, update.helicity_errors, update.rotator)
        self.box.text = result_html(update, now)


def make_document(doc: Document, feed: Feed, follower: ResultFollower | None = None) -> None:
    """Build the shifter page in ``doc`` and show ``feed`` every second; with a
    ``follower``, the monitor's newest result every :data:`LIVE_PERIOD_MS` in between."""
    view = LiveView(feed)
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
    doc.title = "mupnc shifter"
    doc.config.notify_connection_status = False  # one disconnect message: the page's banner
    doc.js_on_event(
        "connection_lost", CustomJS(args={"banner": view.disconnected}, code=DISCONNECTED_JS)
    )
    doc.js_on_event(
        "client_reconnected", CustomJS(args={"banner": view.disconnected}, code=RECONNECTED_JS)
    )
    doc.add_periodic_callback(tick, PERIOD_MS)
    if follower is not None:
        doc.add_periodic_callback(lambda: view.show_live(follower.newest), LIVE_PERIOD_MS)
    doc.on_session_destroyed(lambda _context: feed.detach(session))
