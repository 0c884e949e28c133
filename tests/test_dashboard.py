"""Live dashboard: update logic against a real SQLite file, and the served page in Chromium."""

from __future__ import annotations

import math
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent
from sqlalchemy import Engine

from dashboards.feed import Channel, Feed, RunInfo, Snapshot
from dashboards.live import (
    ROLLOVER,
    channel_columns,
    format_ppm,
    make_document,
    result_html,
    stream_columns,
)
from dashboards.server import serve
from db.models import CUMULATIVE, AsymmetryResult, ResultSnapshot, Run
from db.session import create_schema, make_engine, transaction
from db.store import allocate_run, upsert

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
POINTS = "Bokeh.documents[0].get_model_by_name('asym_source').data.x.length"
IDLE_JS = (
    "() => window.Bokeh !== undefined && Bokeh.documents.length > 0"
    " && Bokeh.documents.every(d => d.is_idle)"
)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    return url


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


def new_run(engine: Engine, start: datetime | None = T0, **config) -> int:
    """A run in state ``running``; ``config`` defaults to an injected 5 ppm A_LR."""
    config = {"mode": "alr", "asymmetry": 5e-6, "blinded": False, **config}
    with transaction(engine) as session:
        number = allocate_run(session, source="sim", mode=config["mode"], config=config)
        run = session.get(Run, number)
        run.state = "running"
        if start is not None:
            run.start = start
    return number


def add_snapshots(engine: Engine, run: int, seconds: list[float], start: datetime = T0) -> None:
    """Snapshots at ``seconds`` after ``start`` converging to 5 ppm (error 10 ppm/√k)."""
    with transaction(engine) as session:
        for t in seconds:
            k = t + 1
            session.add(
                ResultSnapshot(
                    run=run,
                    time=start + timedelta(seconds=t),
                    patterns_good=int(1000 * k),
                    windows=int(4000 * k),
                    lost_windows=0,
                    value=5e-6 + 10e-6 * math.sin(2 * k) / math.sqrt(k),
                    error=10e-6 / math.sqrt(k),
                    charge_asymmetry=None,
                )
            )


def set_channels(engine: Engine, run: int, values: dict[str, tuple[float | None, float | None]]):
    rows = [
        dict(run=run, minirun=CUMULATIVE, channel=c, value=v, error=e, n=1, chi2_ndf=None)
        for c, (v, e) in values.items()
    ]
    with transaction(engine) as session:
        upsert(session, AsymmetryResult, rows, ("run", "minirun", "channel"))


def snap(t: float, value: float | None, error: float | None) -> Snapshot:
    return Snapshot(T0 + timedelta(seconds=t), 10, 40, 1, value, error)


# --- pure functions ---------------------------------------------------------------------------


def test_stream_columns_in_ppm_skipping_missing_values() -> None:
    cols = stream_columns([snap(0.5, None, None), snap(2, 3e-6, 1e-6), snap(4, -1e-6, 5e-7)], T0)
    assert set(cols) == {"x", "y", "lo", "hi"}
    np.testing.assert_allclose(cols["x"], [2, 4])
    np.testing.assert_allclose(cols["y"], [3, -1])
    np.testing.assert_allclose(cols["lo"], [2, -1.5])
    np.testing.assert_allclose(cols["hi"], [4, -0.5])
    assert all(len(c) == 0 for c in stream_columns([], T0).values())


def test_channel_columns_pull() -> None:
    cols = channel_columns(
        [Channel("det0", 2e-6, 1e-6), Channel("det1", None, None), Channel("det2", 1e-6, 0.0)]
    )
    assert cols["channel"] == ["det0", "det1", "det2"]
    np.testing.assert_allclose(cols["value"], [2, np.nan, 1])
    np.testing.assert_allclose(cols["pull"], [2, np.nan, np.nan])


def test_result_box_escapes_and_reports_age() -> None:
    run = RunInfo(7, "<b>running</b>", "afb", T0, blinded=False, expected=5e-6)
    text = result_html(run, snap(10, 12.34e-6, 1.234e-6), T0 + timedelta(seconds=13))
    assert "&lt;b&gt;running&lt;/b&gt;" in text and "<b>running" not in text
    assert "A_FB" in text and "12.3 ± 1.2 ppm" in text
    assert "3 s ago" in text and "5.000 ppm" in text
    blinded = RunInfo(7, "running", "alr", T0, blinded=True, expected=5e-6)
    text = result_html(blinded, None, T0)
    assert "A_LR" in text and "injected" not in text and "no snapshot yet" in text
    assert format_ppm(1e-6, 0.02e-6) == "1.000 ± 0.020 ppm"


# --- feed against SQLite ------------------------------------------------------------------------


def test_feed_since_sequence(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    set_channels(engine, run, {"combined": (1e-6, 1e-6), "det1": (2e-6, 1e-6), "charge": (0, 1)})
    feed.attach("a")
    feed.poll()
    first = feed.since("a")
    assert first.reset and first.run.number == run and first.run.expected == 5e-6
    assert [s.time for s in first.snapshots] == [T0 + timedelta(seconds=t) for t in (1, 2, 3)]
    assert [c.name for c in first.channels] == ["det1", "combined", "charge"]
    assert feed.since("a").snapshots == [] and not feed.since("a").reset
    add_snapshots(engine, run, [4, 5])
    feed.poll()
    feed.poll()  # a second poll finds nothing new
    second = feed.since("a")
    assert not second.reset and len(second.snapshots) == 2
    assert second.latest == second.snapshots[-1]
    feed.attach("b")
    assert len(feed.since("b").snapshots) == 5
    assert feed.sessions == 2
    feed.detach("a")
    assert feed.sessions == 1


def test_feed_resets_on_new_run_and_keeps_maxlen(engine: Engine, db_url: str) -> None:
    feed = Feed(db_url, maxlen=3)
    try:
        first = new_run(engine)
        add_snapshots(engine, first, [1, 2])
        feed.attach("a")
        feed.poll()
        assert len(feed.since("a").snapshots) == 2
        second = new_run(engine, mode="afb", blinded=True)
        add_snapshots(engine, second, [1, 2, 3, 4, 5])
        feed.poll()
        update = feed.since("a")
        assert update.reset and update.run.number == second and update.run.mode == "afb"
        assert update.run.blinded
        assert [s.time - T0 for s in update.snapshots] == [timedelta(seconds=t) for t in (3, 4, 5)]
    finally:
        feed.stop()


def test_feed_without_runs(feed: Feed) -> None:
    feed.attach("a")
    feed.poll()
    update = feed.since("a")
    assert update.run is None and not update.reset and update.latest is None


# --- document level -----------------------------------------------------------------------------


def test_document_streams_with_rollover_and_resets(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    source = doc.get_model_by_name("asym_source")
    assert len(source.data["x"]) == 3
    (callback,) = doc.session_callbacks
    events = []
    doc.on_change(lambda event: events.append(event))

    add_snapshots(engine, run, [4, 5])
    set_channels(engine, run, {"det0": (4e-6, 2e-6), "combined": (5e-6, 1e-6)})
    feed.poll()
    callback.callback()
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert len(streamed) == 1 and streamed[0].rollover == ROLLOVER
    np.testing.assert_allclose(streamed[0].data["x"], [4, 5])
    np.testing.assert_allclose(source.data["x"], [1, 2, 3, 4, 5])
    band = doc.get_model_by_name("band_source").data
    np.testing.assert_allclose(band["x"], [1, 5])
    np.testing.assert_allclose(band["upper"], source.data["hi"][-1])
    table = doc.get_model_by_name("channel_source").data
    np.testing.assert_allclose(table["pull"], [2, 5])
    plot = doc.roots[0].children[0]
    assert "A_LR" in plot.title.text
    assert plot.xaxis[0].axis_label == "time since run start (s)"
    assert plot.yaxis[0].axis_label == "A (ppm)"

    second = new_run(engine, mode="afb")
    add_snapshots(engine, second, [7])
    feed.poll()
    callback.callback()
    np.testing.assert_allclose(source.data["x"], [7])
    assert "A_FB" in plot.title.text and f"run {second}" in plot.title.text

    (destroyed,) = doc.session_destroyed_callbacks
    destroyed(None)
    assert feed.sessions == 0


# --- real browser -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port}")


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_browser_page_grows(engine: Engine, db_url: str) -> None:
    from playwright.sync_api import sync_playwright

    run = new_run(engine, start=None)
    with transaction(engine) as session:
        start = session.get(Run, run).start.replace(tzinfo=UTC)
    set_channels(
        engine,
        run,
        {f"det{i}": (5e-6 + i * 1e-6, 3e-6) for i in range(4)}
        | {"combined": (5e-6, 1.5e-6), "charge": (1e-7, 2e-7)},
    )
    stop_writer, stop_server = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop_writer.wait(0.3):
                t = (datetime.now(UTC) - start).total_seconds()
                add_snapshots(engine, run, [t], start)
        except BaseException as exc:
            failures.append(exc)

    port = free_port()
    writer = threading.Thread(target=write, daemon=True)
    server = threading.Thread(
        target=serve, args=(db_url,), kwargs=dict(port=port, stop=stop_server), daemon=True
    )
    writer.start()
    server.start()
    errors: list[str] = []
    try:
        wait_listening(port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 650})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(IDLE_JS, timeout=30_000)
                before = page.evaluate(f"() => {POINTS}")
                page.wait_for_function(f"() => {POINTS} >= {before + 10}", timeout=30_000)
                assert page.evaluate(f"() => {POINTS}") > before
                box = page.locator("table", has_text="good patterns").inner_text()
                assert "running" in box and "s ago" in box
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
            finally:
                browser.close()
    finally:
        stop_writer.set()
        stop_server.set()
        writer.join(10)
        server.join(30)
    assert not writer.is_alive() and not server.is_alive()
    assert not failures
    assert errors == []
