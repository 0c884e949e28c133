"""The shifter page's alarm banner and table with acknowledge buttons (Bokeh).

Banner and table show strings from the database as text (``render_as_text``, table cells);
the acknowledgement runs on the feed's thread and reports back with a next-tick callback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    Div,
    StringFormatter,
    TableColumn,
    TextInput,
)

from mupnc.dashboards.alarms import SEVERITY_STYLE, AlarmRecord, acknowledge, banner_text
from mupnc.dashboards.feed import Feed
from mupnc.dashboards.tables import live_table

TABLE_HEADER, TABLE_ROW = 30, 26
"""Alarm table height in pixels: header plus one row per alarm (1 to 8 rows)."""
BANNER_STYLE = {"padding": "6px 12px", "font-size": "18px", "font-weight": "bold"}


def alarm_columns(alarms: tuple[AlarmRecord, ...]) -> dict[str, list]:
    """Table columns; ``colour``/``ink`` are the severity cell's background and text colour."""
    style = [SEVERITY_STYLE.get(a.severity, ("#777", "white")) for a in alarms]
    return {
        "id": [a.id for a in alarms],
        "severity": [a.severity for a in alarms],
        "name": [a.name for a in alarms],
        "state": [a.state for a in alarms],
        "since": [f"{a.since:%Y-%m-%d %H:%M:%S}" for a in alarms],
        "message": [a.message for a in alarms],
        "ack": ["yes" if a.acknowledged else "NO" for a in alarms],
        "colour": [s[0] for s in style],
        "ink": [s[1] for s in style],
    }


class AlarmPanel:
    """Banner for the top alarm, the alarm table, and acknowledgement as a named operator."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.shown: tuple[AlarmRecord, ...] | None = None
        self.banner = Div(name="alarm_banner", render_as_text=True, sizing_mode="stretch_width")
        self.source = ColumnDataSource(alarm_columns(()), name="alarm_source")
        severity = StringFormatter(background_color="colour", text_color="ink")
        self.table = live_table(
            self.source,
            columns=[
                TableColumn(field="severity", title="severity", formatter=severity, width=80),
                TableColumn(field="name", title="alarm", width=160),
                TableColumn(field="state", title="state", width=80),
                TableColumn(field="since", title="since (UTC)", width=140),
                TableColumn(field="message", title="message", width=420),
                TableColumn(field="ack", title="ack", width=40),
            ],
            selectable="checkbox",
            height=TABLE_HEADER + TABLE_ROW,
            sizing_mode="stretch_width",
            index_position=None,
            name="alarm_table",
        )
        self.operator = TextInput(title="operator", value="shifter", width=160)
        self.ack_selected = Button(label="Acknowledge selected", width=170, align="end")
        self.ack_all = Button(label="Acknowledge all", width=140, align="end")
        self.ack_selected.on_click(lambda: self._acknowledge(selected=True))
        self.ack_all.on_click(lambda: self._acknowledge(selected=False))
        self.feedback = Div(render_as_text=True, name="alarm_feedback", align="end")
        self.layout = column(
            self.table,
            row(self.operator, self.ack_selected, self.ack_all, self.feedback),
            sizing_mode="stretch_width",
        )

    def apply(self, alarms: tuple[AlarmRecord, ...], now: datetime) -> None:
        text, severity = banner_text(alarms, now)
        background, ink = SEVERITY_STYLE.get(severity, ("#777", "white"))
        self.banner.text = text
        self.banner.styles = {**BANNER_STYLE, "background": background, "color": ink}
        if alarms != self.shown:
            self.shown = alarms
            self.source.data = alarm_columns(alarms)
            self.table.height = TABLE_HEADER + TABLE_ROW * min(max(len(alarms), 1), 8)

    def _acknowledge(self, selected: bool) -> None:
        data = self.source.data
        rows = self.source.selected.indices if selected else range(len(data["id"]))
        ids = [int(data["id"][i]) for i in rows if data["ack"][i] == "NO"]
        if not ids:
            self.feedback.text = "nothing to acknowledge"
            return
        doc, who, now = self.table.document, self.operator.value, datetime.now(UTC)
        self.feedback.text = f"acknowledging {len(ids)} alarm(s)…"

        def done(count: object, error: Exception | None) -> None:  # feed thread
            text = f"acknowledge failed: {error}" if error else f"{count} alarm(s) acknowledged"
            if doc is not None:
                doc.add_next_tick_callback(partial(self._report, text))

        self.feed.submit(lambda session: acknowledge(session, ids, who, now), done)

    def _report(self, text: str) -> None:
        self.feedback.text = text
