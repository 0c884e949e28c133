"""Dashboards: pure update logic, the feed against a real SQLite file, and document-level
behaviour of the shifter and history pages (no browser; see test_dashboard_browser.py)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnsStreamedEvent
from bokeh.events import ButtonClick, PanStart, Reset
from bokeh.models import Button, Toggle
from bokeh.server.callbacks import NextTickCallback
from dashboard_data import (
    T0,
    add_alarm,
    add_miniruns,
    add_samples,
    add_snapshots,
    by_name,
    new_run,
    set_channels,
    set_helicity_errors,
    shifter_page,
)
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from support.cli import sqlite_with_schema

from mupnc.dashboards.alarms import acknowledge, banner_text, displayed_alarms
from mupnc.dashboards.columns import (
    CHI2_MINIRUNS,
    PULL_MINIRUNS,
    asymmetry_columns,
    beam_difference_columns,
    bin_edges,
    channel_columns,
    charge_columns,
    completed_miniruns,
    decoder_state,
    good_beam_seconds,
    interval_columns,
    outlier_columns,
    pending_text,
    rate_columns,
)
from mupnc.dashboards.display import (
    LIVE,
    LOST,
    NO_DATA,
    PERCENT,
    PPB,
    PPM,
    STALE,
    beam_state,
    choose_unit,
    format_asymmetry,
    format_duration,
    format_rate,
    format_significant,
    format_with_error,
    freshness,
    minirun_pulls,
    pull_colours,
    pull_histogram,
    round_to_error,
    seconds_to_patterns,
    settled,
    unit_gaussian,
    y_range,
)
from mupnc.dashboards.feed import Feed, Update
from mupnc.dashboards.history import RunRecord as HistoryRecord
from mupnc.dashboards.history import (
    difference_html,
    difference_sigma,
    make_history,
    minirun_table,
    summary_html,
)
from mupnc.dashboards.live import (
    LiveView,
    beam_html,
    make_document,
    result_html,
    run_html,
    status_html,
)
from mupnc.dashboards.panels import ROLLOVER, AsymmetryPlot, BeamStrip, reversal_html
from mupnc.dashboards.projection import describe, project
from mupnc.dashboards.queries import latest_run
from mupnc.dashboards.queries import run_info as run_info_of
from mupnc.dashboards.records import (
    BeamDifference,
    Channel,
    MinirunMean,
    RunInfo,
    Sample,
    Snapshot,
)
from mupnc.db.models import Alarm, AlarmTransition
from mupnc.db.session import make_engine, transaction
from mupnc.sim.alr_model import mott_cross_section


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return sqlite_with_schema(tmp_path / "dashboard.db")


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


def snap(t: float, value: float | None, error: float | None, **kw) -> Snapshot:
    fields = dict(patterns_good=10, windows=40, lost_windows=1) | kw
    return Snapshot(T0 + timedelta(seconds=t), value=value, error=error, **fields)


def run_info(**kw) -> RunInfo:
    fields = dict(
        number=7,
        state="running",
        source="sim",
        mode="alr",
        start=T0,
        end=None,
        blinded=False,
        expected=5e-6,
        windows=0,
        lost_windows=0,
        pattern="quartet",
        window_rate=240.0,
        polarization=0.9,
        muon_rate=1e8,
        delay_patterns=8,
        scheme="fast",
        roles=(("det0", "scatter"), ("fwd", "forward"), ("bcm", "monitor")),
        pattern_windows=4,
    )
    return RunInfo(**(fields | kw))


# --- units, ranges, pulls, staleness, projection -------------------------------------------------


def test_unit_by_magnitude_with_hysteresis() -> None:
    assert choose_unit(0.05) is PERCENT and choose_unit(1e-3) is PPM
    assert choose_unit(2e-6) is PPM and choose_unit(4e-7) is PPB and choose_unit(0.0) is PPM
    assert choose_unit(5e-7, current=PPM) is PPM  # 0.5 ppm still reads well in ppm
    assert choose_unit(1e-7, current=PPM) is PPB
    assert choose_unit(2e-6, current=PPB) is PPB  # 2000 ppb: keep
    assert choose_unit(5e-5, current=PPB) is PPM
    assert choose_unit(0.02, current=PPM) is PPM and choose_unit(0.05, current=PPM) is PERCENT
    assert format_asymmetry(1e-6, 0.02e-6, PPM) == "1.000 ± 0.020 ppm"
    assert format_asymmetry(12.34e-9, 1.234e-9) == "12.3 ± 1.2 ppb"
    assert format_asymmetry(0.0312, 0.0021) == "3.12 ± 0.21 %"
    assert format_asymmetry(None, 1e-6) == "no result yet"


def test_values_are_rounded_to_two_significant_digits_of_their_error() -> None:
    assert round_to_error(-1304.490, 866.642) == ("-1300", "870")
    assert round_to_error(12.34, 1.234) == ("12.3", "1.2")
    assert round_to_error(0.5, 0.01234) == ("0.500", "0.012")
    assert round_to_error(1.0, 9.96) == ("1", "10")  # the error rounds up a decade
    assert round_to_error(5.0, 0.0995) == ("5.00", "0.10")
    assert round_to_error(-4.0, 870.0) == ("0", "870")  # no "-0"
    for error in (math.nan, math.inf, 0.0, -1.0, None):  # no fake precision
        assert round_to_error(1.0, error) is None
    assert round_to_error(math.nan, 1.0) is None
    assert format_asymmetry(-1304.490e-6, 866.642e-6, PPM) == "-1300 ± 870 ppm"
    assert format_asymmetry(1e-6, math.nan, PPM) == "no result yet"
    assert format_with_error(-1304.49, 866.642, "ppm") == "-1300 ± 870 ppm"
    assert format_with_error(3.0, 0.5, "") == "+3.00 ± 0.50"
    assert format_with_error(3.0, math.nan, "ppm") == "undefined"
    assert format_significant(362.4) == "360" and format_significant(1000.0) == "1000"
    assert format_significant(0.0012345) == "0.0012" and format_significant(-0.0) == "0"
    # the channel table's cells, the beam table's and the history's minirun table's
    rows = channel_columns(
        [Channel("det0", -1304.49e-6, 866.642e-6), Channel("det1", 1e-6, None)],
        {"det0": "scatter", "det1": "scatter"},
        PPM,
    )
    assert rows["shown"] == ["-1300 ± 870", "–"]
    beam = beam_difference_columns([BeamDifference("x", 2.00123e-2, 4.567e-4, 1e-3, "mm", 9)])
    assert beam["shown"] == ["+20010 ± 460"] and beam["unit"] == ["nm"]
    table = minirun_table((MinirunMean(0, 10, 1.2345e-6, 0.2345e-6),), PPM)
    assert table["shown"] == ["+1.23 ± 0.23"]


def test_y_range_includes_error_bars_and_lines() -> None:
    start, end = y_range([4.0, 6.0], [8.0, 7.0], [0.0, None], pad=0.0)
    assert (start, end) == (0.0, 8.0)
    start, end = y_range([4.0], [8.0], [12.0], pad=0.1)
    assert start == pytest.approx(3.2) and end == pytest.approx(12.8)
    assert y_range([np.nan], [np.inf], [None]) == (-1.0, 1.0)
    assert y_range([3.0], [3.0]) == (2.0, 4.0)
    x = np.arange(21.0)
    assert settled(x, 0.1).tolist() == [False, False] + [True] * 19
    assert settled(x[:10], 0.1).all() and settled(x, 0.0).all()


def test_minirun_pulls_are_unit_gaussian() -> None:
    rng = np.random.default_rng(11)
    n = 4000
    errors = rng.uniform(1, 3, n)
    values = 5 + rng.normal(0, errors)
    pull = minirun_pulls(values, errors)
    # mean of n unit Gaussians: 3 sigma = 3/sqrt(n); RMS: sigma of the RMS ~ 1/sqrt(2n)
    assert abs(pull.mean()) < 3 / math.sqrt(n)
    assert abs(pull.std() - 1) < 3 / math.sqrt(2 * n)
    assert len(minirun_pulls(values[:1], errors[:1])) == 0
    counts = pull_histogram(np.array([-9.0, -0.1, 0.1, 0.2, 9.0]))
    assert counts.sum() == 5 and counts[0] == 1 and counts[-1] == 1 and counts[9] == 1
    gauss = unit_gaussian(np.linspace(-20, 20, 4001), 100, 0.5)
    assert gauss.sum() * 0.01 / 0.5 == pytest.approx(100, rel=1e-6)
    assert pull_colours(np.array([0.5, -2.5, 3.2, np.nan])) == [
        "white",  # unremarkable: no colour
        "#ffe9a0",
        "#ffb0b0",
        "white",
    ]


def test_freshness_and_durations() -> None:
    assert freshness(None, 5, 30) == NO_DATA
    assert freshness(1.0, 5, 30) == LIVE
    assert freshness(10.0, 5, 30) == STALE
    assert freshness(31.0, 5, 30) == LOST
    assert format_duration(42) == "42 s" and format_duration(720) == "12 min"
    assert format_duration(3 * 3600) == "3.0 h" and format_duration(3 * 86400) == "3.0 d"


def test_projection_scales_as_inverse_square_of_the_target_error() -> None:
    # 100 s gave sigma = 1e-5; 5 sigma on 1e-5 needs sigma 2e-6, i.e. 25 times longer
    p = project(100.0, 1e-5, 1e-5, n_sigma=5)
    assert p.needed == pytest.approx(2500.0) and p.remaining == pytest.approx(2400.0)
    assert describe(p) == "40 min more to 5 σ"
    assert project(100.0, 1e-6, -1e-5).remaining == 0 and describe(project(100, 1e-6, 1e-5)) == (
        "5 σ reached"
    )
    assert project(100.0, None, 1e-5) is None and project(0.0, 1e-6, 1e-5) is None
    assert project(100.0, 1e-6, None) is None and describe(None) == "insufficient data"
    assert project(100.0, 1e-6, 0.0) is None  # the planner refuses a zero asymmetry
    # sigma_target = 0.1/3: (2e-3 / (0.1/3))**2 * 50 s = 0.18 s
    assert project(50.0, 2e-3, 0.1, n_sigma=3).needed == pytest.approx(0.18)


# --- column builders -----------------------------------------------------------------------------


def test_asymmetry_columns_in_the_chosen_unit_skipping_missing_values() -> None:
    snaps = [snap(0.5, None, None), snap(2, 3e-6, 1e-6), snap(4, -1e-6, 5e-7)]
    cols = asymmetry_columns(snaps, T0, PPM)
    np.testing.assert_allclose(cols["x"], [2, 4])
    np.testing.assert_allclose(cols["y"], [3, -1])
    np.testing.assert_allclose(cols["lo"], [2, -1.5])
    np.testing.assert_allclose(cols["hi"], [4, -0.5])
    np.testing.assert_allclose(asymmetry_columns(snaps, T0, PPB)["y"], [3000, -1000])
    assert all(len(c) == 0 for c in asymmetry_columns([], T0, PPM).values())


def test_rates_over_bins_of_at_least_the_bin_length() -> None:
    """Snapshots every second, windows arriving in bursts (300, 180, 240, ... per second):
    bins of 5 s close at 6 and 11 s and give the mean rates, not the bursts."""
    times = range(1, 13)
    bursts = [0, 300, 180, 240, 300, 180, 240, 240, 240, 240, 240, 240]
    windows = np.cumsum(bursts)
    snaps = [
        snap(t, 0, 1, windows=int(w), patterns_good=int(w) // 4)
        for t, w in zip(times, windows, strict=True)
    ]
    edges = bin_edges(snaps[1:], snaps[0].time, 5.0)
    assert [(e.time - T0).total_seconds() for e in edges] == [6, 11]
    cols = rate_columns([snaps[0], *edges], T0, 4)
    np.testing.assert_allclose(cols["x"], [3.5, 8.5])  # the middle of each bin
    np.testing.assert_allclose(cols["window_rate"], [240, 240])  # no 300/180 spikes
    np.testing.assert_allclose(cols["good_rate"], cols["window_rate"])
    assert len(rate_columns([snaps[0]], T0, 4)["x"]) == 0
    assert np.isnan(rate_columns([snaps[0], *edges], T0, None)["good_rate"]).all()


def test_a_catch_up_burst_is_flagged_above_the_axis_with_its_rate() -> None:
    flags = outlier_columns(np.array([5.0, 10.0, 15.0]), np.array([240.0, 6000.0, np.nan]), 360)
    assert flags == {"x": [10.0], "y": [0.97 * 360], "text": ["6000 Hz"]}


def test_charge_columns_running_charge_asymmetry_nan_when_unknown() -> None:
    cols = charge_columns(
        [snap(3, 0, 1, charge_asymmetry=2e-6), snap(4, 0, 1, charge_asymmetry=None)], T0, PPM
    )
    np.testing.assert_allclose(cols["x"], [3, 4])
    np.testing.assert_allclose(cols["charge"], [2, np.nan])


def test_per_interval_points_from_cumulative_results_are_the_intervals_own() -> None:
    """Two intervals with 1/sigma^2 = 4 and 12 and means 3 and -1: cumulative 3 ± 0.5
    then (4*3 + 12*(-1))/16 = 0 ± 0.25; the per-interval points give back 3 ± 0.5 and
    -1 ± 1/sqrt(12), from the run start; one whose weight did not grow is left out."""
    first, second = snap(30, 3.0, 0.5), snap(60, 0.0, 0.25)
    cols = interval_columns(None, [first, second], T0, PPM)
    np.testing.assert_allclose(cols["x"], [15, 45])
    np.testing.assert_allclose(cols["y"], [3e6, -1e6])
    np.testing.assert_allclose(cols["hi"] - cols["y"], [0.5e6, 1e6 / np.sqrt(12)])
    later = interval_columns(second, [snap(90, 0.0, 0.25)], T0, PPM)
    assert len(later["x"]) == 0


def test_channel_pulls_against_expectation_by_role() -> None:
    channels = [
        Channel("det0", 7.5e-6, 1e-6),
        Channel("fwd", -5e-6, 2e-6),
        Channel("bcm", 3e-7, 1e-7),
        Channel("combined", 5e-6, 0.5e-6, 1.1),
        Channel("charge", 1e-7, 1e-7),
    ]
    roles = dict(run_info().roles)
    cols = channel_columns(channels, roles, PPM)
    assert cols["role"] == ["scatter", "forward", "monitor", "combined", "charge"]
    # scatter expects +A, forward -A, monitor and charge zero, combined has no pull
    np.testing.assert_allclose(cols["pull"], [2.5, 0, 3, np.nan, 1])
    assert cols["colour"] == ["#ffe9a0", "white", "#ffb0b0", "white", "white"]
    np.testing.assert_allclose(cols["value"], [7.5, -5, 0.3, 5, 0.1])


def test_channel_pulls_follow_the_a_lr_shape(engine: Engine) -> None:
    # an "sm" preset at cos theta 0 and -1: relative asymmetry 1 and 2; A_0 = 3 ppm
    channels = [
        Channel("fwd_bin", 3e-6, 1e-6),
        Channel("back_bin", 6e-6, 1e-6),
        Channel("combined", 4.5e-6, 0.7e-6),
    ]
    roles = {"fwd_bin": "scatter", "back_bin": "scatter"}
    cols = channel_columns(channels, roles, PPM, {"fwd_bin": 1.0, "back_bin": 2.0})
    np.testing.assert_allclose(cols["pull"], [0, 0, np.nan], atol=1e-12)
    flat = channel_columns(channels, roles, PPM)  # without the shape both bins look off
    np.testing.assert_allclose(flat["pull"], [-1.5, 1.5, np.nan])
    channel_map = {
        "mode": "alr",
        "channels": [
            {"name": "fwd_bin", "role": "scatter", "acceptance": 1e-3, "cos_theta": 0.0},
            {"name": "back_bin", "role": "scatter", "acceptance": 1e-3, "cos_theta": -1.0},
            {"name": "bcm", "role": "monitor", "acceptance": 1.0},
        ],
    }
    new_run(engine, preset="sm", signal_fraction=0.5, asymmetry=4e-6, channel_map=channel_map)
    with Session(engine) as session:
        info = latest_run(session)
    assert dict(info.shape) == {"fwd_bin": 1.0, "back_bin": 2.0, "bcm": 1.0}
    # diluted, and the count-weighted mean shape: the sm preset weights the bins by the Mott
    # cross section (29 MeV/c off graphite, the defaults), ~4x more counts at 90 deg
    forward, backward = (mott_cross_section(cos, 29.0, 6, 12.011) for cos in (0.0, -1.0))
    mean_shape = (forward * 1.0 + backward * 2.0) / (forward + backward)
    assert info.expected == pytest.approx(4e-6 * 0.5 * mean_shape)


def test_miniruns_good_beam_time_and_decoder_state() -> None:
    ms = [MinirunMean(i, 9000, 1e-6, 1e-6) for i in (2, 0, 1)]
    assert [m.index for m in completed_miniruns(ms, running=True)] == [0, 1]
    assert [m.index for m in completed_miniruns(ms, running=False)] == [0, 1, 2]
    short_last = [*ms, MinirunMean(3, 4499, 1e-6, 1e-6)]  # under half a minirun: left out
    assert [m.index for m in completed_miniruns(short_last, running=False)] == [0, 1, 2]
    half = [*ms, MinirunMean(3, 4500, 1e-6, 1e-6)]
    assert [m.index for m in completed_miniruns(half, running=False)] == [0, 1, 2, 3]
    assert completed_miniruns([], running=True) == []
    assert good_beam_seconds(run_info(), 6000) == pytest.approx(100.0)
    assert good_beam_seconds(run_info(window_rate=None), 6000) is None
    a, b = snap(1, 0, 1, patterns_good=10, windows=40), snap(2, 0, 1, patterns_good=20, windows=80)
    stuck = snap(3, 0, 1, patterns_good=20, windows=120)
    assert decoder_state(a, b, "running") == "locked"
    assert decoder_state(b, stuck, "running") == "not locked"
    assert decoder_state(stuck, stuck, "running") == "no new windows"
    assert decoder_state(None, b, "running") == "waiting"
    assert decoder_state(a, b, "ended") == "run ended"
    # As the monitor reports it: a flaky board leaves it locked, learning holds windows.
    reported = snap(4, 0, 1, patterns_good=20, windows=120, decoder="LOCKED", windows_held=0)
    assert decoder_state(stuck, reported, "running") == "locked"
    learning = snap(5, 0, 1, decoder="LEARNING", windows_held=1234)
    assert decoder_state(a, learning, "running") == "learning · 1,234 windows held"
    assert decoder_state(a, snap(6, 0, 1, decoder="UNLOCKED"), "running") == "unlocked"


def test_result_box_blinding_escaping_and_projection() -> None:
    latest = snap(100, 12.34e-6, 1.234e-6, patterns_good=6000)
    combined = Channel("combined", 12.34e-6, 1.234e-6, 0.93)
    miniruns = tuple(MinirunMean(i, 9000, 1e-5, 1e-6) for i in range(4))
    update = Update(
        run_info(),
        False,
        [],
        latest,
        (combined,),
        miniruns,
        polled=T0 + timedelta(seconds=102),
    )
    now = T0 + timedelta(seconds=103)
    text = result_html(update, now)
    assert "A_LR = 12.3 ± 1.2 ppm" in text and "0.93 (4 miniruns, the newest still filling)" in text
    assert "10.0 σ from zero" in text and "BLINDED" not in text
    assert "100 s" in text and "6,000" in text  # good-beam time, good patterns
    assert "injected</th><td>5 ppm" in text and "3 s ago" in text
    # 5 sigma on the injected 5 ppm needs sigma 1 ppm: 100 s * 1.234**2 = 152 s, 52 s more
    assert "52 s more to 5 σ" in text
    blinded = Update(run_info(blinded=True), False, [], latest, (combined,))
    text = result_html(blinded, now)
    assert "BLINDED" in text and "injected" not in text and "from zero" not in text
    assert "(blinded)" in text
    # its projection uses what the page shows (10 sigma now), never the injected 5 ppm
    assert "5 σ reached" in text and "52 s more" not in text
    info = run_html(run_info(state="<b>running</b>", source="<i>sim"), now)
    assert "&lt;b&gt;running&lt;/b&gt;" in info and "<b>running" not in info and "<i>" not in info
    status = status_html(update, now)
    assert "database: LIVE" in status and "monitor: LIVE" in status
    assert "slow controls: NO DATA · none archived" in status
    sampled = Update(
        run_info(), False, [], latest, latest_sample=Sample(now, "B:BEAM:RATE", 1e8, "NO_ALARM")
    )
    assert "slow controls: LIVE · last sample 0 s ago" in status_html(sampled, now)
    lost = Update(run_info(), False, [], latest, poll_error="OperationalError: <locked>")
    status = status_html(lost, now + timedelta(seconds=60))
    assert "database: LOST" in status and "&lt;locked&gt;" in status and "<locked>" not in status
    assert "monitor: LOST" in status and "run 7 still open (mupnc runs, mupnc run close)" in status
    ended = Update(run_info(state="ended"), False, [], latest, polled=now)
    assert "monitor: RUN ENDED · last result 3 s ago" in status_html(ended, now)
    # fresh snapshots, but no window analysed for 20 s (the decoder holding them): not LIVE
    held = status_html(update, now, analysed=latest.time - timedelta(seconds=17))
    assert "monitor: STALE · no window analysed for 20 s" in held, held
    assert "monitor: LIVE" in status_html(update, now, analysed=latest.time)


def test_the_live_view_tracks_when_windows_were_last_analysed(tmp_path) -> None:
    """The shifter page's monitor badge follows the decoded windows, not the snapshots: a
    monitor writing snapshots every second while it holds every window is not LIVE."""
    feed = Feed(f"sqlite:///{tmp_path / 'view.db'}")
    try:
        view = LiveView(feed)
        growing = [snap(s, None, None, windows=240 * s) for s in range(3)]
        view.apply(Update(run_info(), True, growing, growing[-1]), T0 + timedelta(seconds=3))
        assert view.analysed == growing[-1].time and "monitor: LIVE" in view.status.text
        held = [snap(s, None, None, windows=480) for s in range(3, 20)]
        view.apply(Update(run_info(), False, held, held[-1]), T0 + timedelta(seconds=20))
        assert view.analysed == growing[-1].time
        assert "monitor: STALE · no window analysed for 18 s" in view.status.text
    finally:
        feed.stop()


def test_the_rate_strip_keeps_its_axis_and_flags_a_catch_up_burst() -> None:
    """240 Hz for a minute, then 5 s of catch-up at 6000 Hz: the axis stays at 1.5x the
    median rate (360 Hz), the burst's bins are flagged at its top with their rate, and the
    decoded trace is not squashed."""
    strip, run = BeamStrip(), run_info()
    rates = [240] * 60 + [6000] * 5 + [240] * 30
    windows = np.cumsum(rates)
    snaps = [snap(t + 1, 0, 1, windows=int(w)) for t, w in enumerate(windows)]
    strip.apply(run, snaps[:10], [], reset=True)
    for t in range(10, len(snaps), 7):
        strip.apply(run, snaps[t : t + 7], [], reset=False)
    assert strip.rate_range.start == 0 and strip.rate_range.end == pytest.approx(360)
    flagged = strip.flags.data
    assert len(flagged["x"]) >= 1 and all(text.endswith(" Hz") for text in flagged["text"])
    assert max(float(t.split()[0]) for t in flagged["text"]) > 2000
    assert min(flagged["x"]) >= 55 and max(flagged["x"]) <= 72  # the bins holding the burst


def test_the_running_plot_toggles_to_independent_per_interval_points() -> None:
    """The toggle hides the cumulative points, band and newest point, shows the 30 s points
    (their own data: 1 ± 0.5 then -1 ± 0.5 from cumulative 1 ± 0.5 and 0 ± 0.354) and says
    so in the title; off again, back to cumulative."""
    plot, run = AsymmetryPlot(), run_info()
    plot.apply(run, [snap(30, 1e-6, 0.5e-6), snap(60, 0.0, 0.5e-6 / np.sqrt(2))], reset=True)

    def legend() -> list[str]:  # the legend lists what is shown, nothing hidden
        return [item.label.value for item in plot.plot.legend.items if item.visible]

    assert "(cumulative)" in plot.plot.title.text
    assert not any(g.visible for g in plot.interval_glyphs)
    assert len(legend()) == 3 and not any("on its own" in text for text in legend())
    plot.per_interval.active = True
    assert "per 30 s" in plot.plot.title.text and "(cumulative)" not in plot.plot.title.text
    assert all(g.visible for g in plot.interval_glyphs)
    assert not any(g.visible for g in plot.cumulative_glyphs)
    assert legend() == ["raw, each 30 s on its own (independent)"]
    np.testing.assert_allclose(plot.intervals.data["y"], [1, -1], atol=1e-9)
    np.testing.assert_allclose(np.asarray(plot.intervals.data["hi"]) - [1, -1], [0.5, 0.5])
    assert plot.y_range.start < -1.5 and plot.y_range.end > 1.5  # fitted to what is shown
    plot.per_interval.active = False
    assert "(cumulative)" in plot.plot.title.text
    assert all(g.visible for g in plot.cumulative_glyphs)
    assert len(legend()) == 3


def test_the_beam_state_badge_shows_on_off_tripped_and_the_measured_rate() -> None:
    # archived enum indices: BEAM:ON 0 OFF / 1 ON, BEAM:TRIP 0 OK / 1 TRIPPED
    assert beam_state(1.0, 0.0) == "on" and beam_state(1.0, 1.0) == "tripped"
    assert beam_state(0.0, 1.0) == "off"  # switched off: no beam, but nothing tripped
    assert beam_state(None, 0.0) == "on" and beam_state(None, None) == "unknown"
    assert format_rate(9.87e7) == "98.7 MHz" and format_rate(240.0) == "240 Hz"
    assert format_rate(None) == "?"
    now = T0 + timedelta(seconds=10)

    def pvs(on: float, trip: float) -> tuple[Sample, ...]:
        return tuple(
            Sample(T0, name, value, "NO_ALARM")
            for name, value in (("BEAM:ON", on), ("BEAM:TRIP", trip), ("BEAM:RATE_SP", 1e8))
        )

    rate = Sample(now - timedelta(seconds=1), "M:BEAM:RATE", 9.87e7, "NO_ALARM")
    on = Update(run_info(), False, [], None, latest_sample=rate, beam_state=pvs(1, 0))
    text = beam_html(on, now)
    assert "beam: ON · measured 98.7 MHz 1 s ago (setpoint 100 MHz)" in text, text
    assert "#1a7f1a" in text
    tripped = beam_html(Update(run_info(), False, [], None, beam_state=pvs(1, 1)), now)
    assert "beam: TRIPPED · measured ?" in tripped and "#c00000" in tripped
    off = beam_html(Update(run_info(state="ended"), False, [], None, beam_state=pvs(0, 1)), now)
    assert "beam: OFF · last known, no run live;" in off
    unknown = beam_html(Update(run_info(), False, [], None), now)
    assert "UNKNOWN · BEAM:ON and BEAM:TRIP not archived" in unknown
    assert "(setpoint 100 MHz)" in unknown  # the run's configured setpoint
    # run information names the setpoint as such, and the measured rate beside it
    info = run_html(run_info(), now, rate)
    assert "muon rate setpoint</th><td>100 MHz (at the run's start)" in info
    assert "measured muon rate</th><td>98.7 MHz" in info
    # the channel map's efficiency beside the planner's, with the factor in time between them
    demo = run_html(run_info(efficiency=2e-3, planner_efficiency=3.6e-11), now)
    assert "efficiency</th><td>0.002 counts per muon (channel map)" in demo, demo
    assert "assumes 3.6e-11: the same σ takes 5.6e+07× longer there" in demo, demo
    assert "efficiency" not in run_html(run_info(), now)  # no map, no line


def test_the_spin_reversal_panel_matches_the_scheme() -> None:
    def rotator(state: float, setpoint: float, readback: float) -> tuple[Sample, ...]:
        values = (("HEL:ROTATOR:STATE", state), ("HEL:ROTATOR:SP", setpoint))
        values += (("HEL:ROTATOR:RBV", readback),)
        return tuple(Sample(T0, name, value, "NO_ALARM") for name, value in values)

    fast = reversal_html(run_info(), rotator(1, -1, -1))
    assert "Helicity board" in fast and "MINUS" not in fast and "setpoint" not in fast
    slow = reversal_html(
        run_info(scheme="slow", flip_period=2.0, settle_time=0.05), rotator(3, 1, -1)
    )
    assert "Spin rotator</b> (slow reversal)" in slow and "FAULT" in slow
    assert "(setpoint +1, readback -1); flips every 2 s, settles in 0.05 s" in slow
    assert "Helicity board" not in slow
    kick = reversal_html(run_info(scheme="kick", kick_turns=(3, 5)), rotator(0, 5, 5))
    assert "Kick</b>" in kick and "PLUS" in kick and "setpoint +5, readback +5" in kick
    assert "alternating turns 3, 5" in kick
    unarchived = reversal_html(run_info(scheme="slow"), ())
    assert "not archived" in unarchived and "flips every ?" in unarchived


def test_slow_controls_are_idle_not_stale_without_a_live_run() -> None:
    now = T0 + timedelta(minutes=10)
    sample = Sample(T0, "M:BEAM:RATE", 1e8, "NO_ALARM")
    for run in (run_info(state="ended"), run_info(state="aborted"), None):
        update = Update(run, False, [], None, polled=now, latest_sample=sample)
        status = status_html(update, now)
        assert "slow controls: IDLE · no run live; last sample 10 min ago" in status, status
        assert "#b07800" not in status  # no amber
    running = Update(run_info(), False, [], None, polled=now, latest_sample=sample)
    assert "slow controls: LOST" in status_html(running, now)


def test_minirun_statistics_are_pending_with_the_time_they_need() -> None:
    # 60 good patterns a second; 9000-pattern miniruns (the fast scheme's default)
    assert seconds_to_patterns(6000, 100.0, 13500) == pytest.approx(125.0)
    assert seconds_to_patterns(0, 10.0, 100) is None and seconds_to_patterns(200, 1, 100) == 0
    latest = snap(100, 5e-6, 1.2e-6, patterns_good=7500)
    chi2 = pending_text(run_info(), (), latest, CHI2_MINIRUNS)
    assert chi2 == "pending · ~80 s more (needs 1.5 miniruns of 9,000 good patterns)"
    pulls_wait = pending_text(run_info(), (), latest, PULL_MINIRUNS)
    assert pulls_wait == "pending · ~2 min more (needs 2 miniruns of 9,000 good patterns)"
    # the length from a completed minirun once there is one (a monitor's own length)
    done = (MinirunMean(0, 3000, 1e-6, 1e-6), MinirunMean(1, 3000, 1e-6, 1e-6))
    assert "miniruns of 3,000 good patterns" in pending_text(run_info(), done, latest, 2.0)
    assert pending_text(run_info(state="ended"), (), latest, 2.0).startswith("none (the run")
    update = Update(run_info(), False, [], latest, (Channel("combined", 5e-6, 1.2e-6),))
    text = result_html(update, T0 + timedelta(seconds=101))
    assert "χ²/ndf (miniruns)</th><td>pending · ~80 s more" in text
    # the projection says what it projects from
    assert "from σ = 1.2 ppm after 100 s; for A = 5.0 ppm (the injected value)" in text
    blinded = result_html(
        Update(run_info(blinded=True), False, [], latest, (Channel("combined", 5e-6, 1.2e-6),)),
        T0 + timedelta(seconds=101),
    )
    assert "(the measured, blinded value)" in blinded and "injected" not in blinded


# --- feed against SQLite -------------------------------------------------------------------------


def test_feed_since_sequence(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    set_channels(engine, run, {"combined": (1e-6, 1e-6), "det1": (2e-6, 1e-6), "charge": (0, 1)})
    add_miniruns(engine, run, 3)
    set_helicity_errors(engine, run, {"phase_error": 2, "settle": 0})
    add_samples(engine, "MUPNC:BEAM:RATE", [-5, 1, 2], 1e8)  # one before the run started
    add_samples(engine, "MUPNC:BEAM:MOMENTUM", [1], 28.0)
    feed.attach("a")
    feed.poll()
    first = feed.since("a")
    assert [s.time - T0 for s in first.samples] == [timedelta(seconds=t) for t in (1, 2)]
    assert first.latest_sample == first.samples[-1] and first.samples[0].value == 1e8
    assert first.reset and first.run.number == run and first.run.expected == 5e-6
    assert first.run.pattern == "quartet" and dict(first.run.roles)["bcm"] == "monitor"
    assert [s.time for s in first.snapshots] == [T0 + timedelta(seconds=t) for t in (1, 2, 3)]
    assert [c.name for c in first.channels] == ["det1", "combined", "charge"]
    assert [m.index for m in first.miniruns] == [0, 1, 2]
    assert first.helicity_errors == (("phase_error", 2), ("settle", 0))
    assert first.polled is not None and first.poll_error is None
    assert feed.since("a").snapshots == [] and not feed.since("a").reset
    add_snapshots(engine, run, [4, 5])
    add_samples(engine, "MUPNC:BEAM:RATE", [4], 0.9e8)
    feed.poll()
    feed.poll()  # a second poll finds nothing new
    second = feed.since("a")
    assert not second.reset and len(second.snapshots) == 2
    assert [s.value for s in second.samples] == [0.9e8]
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


def test_feed_without_runs_and_with_a_lost_database(tmp_path: Path, feed: Feed) -> None:
    feed.attach("a")
    feed.poll()
    update = feed.since("a")
    assert update.run is None and not update.reset and update.latest is None
    assert update.polled is not None
    # a database without the schema: the poller thread records the failure
    broken = Feed(f"sqlite:///{tmp_path / 'empty.db'}", interval=0.05)
    broken.attach("a")
    broken.start()
    try:
        for _ in range(200):
            if broken.since("a").poll_error:
                break
            broken._stop.wait(0.05)
        update = broken.since("a")
        assert update.poll_error and "no such table" in update.poll_error
        assert update.polled is None
    finally:
        broken.stop()


# --- document level ------------------------------------------------------------------------------


def test_shifter_document_streams_fits_and_resets(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    source = by_name(doc, "asym_source")
    assert len(source.data["x"]) == 3
    (callback,) = doc.session_callbacks
    events = []
    doc.on_change(lambda event: events.append(event))

    add_snapshots(engine, run, [4, 5])
    set_channels(
        engine,
        run,
        {"det0": (9e-6, 2e-6), "combined": (5e-6, 1e-6), "charge": (0, 1e-7)},
        chi2_ndf=1.2,
    )
    add_miniruns(engine, run, 6)
    set_helicity_errors(engine, run, {"phase_error": 3})
    add_samples(engine, "MUPNC:BEAM:RATE", [4.5], 1.2e8)
    add_samples(engine, "MUPNC:HEL:ROTATOR:STATE", [4, 4.5], 3.0)  # FAULT
    add_samples(engine, "MUPNC:HEL:ROTATOR:SP", [4.5], 1.0)
    add_samples(engine, "MUPNC:HEL:ROTATOR:RBV", [4.5], -1.0)
    feed.poll()
    callback.callback()
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert {e.model.name for e in streamed} == {"asym_source", "beam_source", "muon_rate_source"}
    assert all(e.rollover == ROLLOVER for e in streamed)
    asym = next(e for e in streamed if e.model.name == "asym_source")
    np.testing.assert_allclose(asym.data["x"], [4, 5])
    np.testing.assert_allclose(source.data["x"], [1, 2, 3, 4, 5])
    np.testing.assert_allclose(by_name(doc, "muon_rate_source").data["value"], [120])  # MHz
    assert "slow controls: LOST" in by_name(doc, "status").text  # samples from 2025
    band = by_name(doc, "band_source").data
    np.testing.assert_allclose(band["x"], [1, 5])
    np.testing.assert_allclose(band["upper"], source.data["hi"][-1])
    # the y range holds every settled error bar, zero and the injected 5 ppm
    y = by_name(doc, "asym_y_range")
    assert y.start <= min(0.0, *source.data["lo"]) and y.end >= max(5.0, *source.data["hi"])
    table = by_name(doc, "channel_source").data
    np.testing.assert_allclose(table["pull"], [2, np.nan, 0], equal_nan=True)
    assert table["colour"][0] == "#ffe9a0"
    bars = by_name(doc, "pull_bars").data
    assert sum(bars["top"]) == 5  # six miniruns, the newest still running
    errors = by_name(doc, "helicity_errors").data
    assert dict(zip(errors["kind"], errors["count"], strict=True))["phase_error"] == 3
    helicity = by_name(doc, "helicity_state").text
    assert "locked" in helicity
    # a fast run: the helicity board, not the (archived, meaningless there) rotator
    assert "Helicity board</b> (fast reversal): pseudo-random quartet patterns" in helicity
    assert "reported 8 patterns late" in helicity
    assert "rotator" not in helicity.lower() and "FAULT" not in helicity
    plot = by_name(doc, "asym_plot")
    assert "A_LR" in plot.title.text
    assert plot.xaxis[0].axis_label == "time since run start (s)"
    assert plot.yaxis[0].axis_label == "A_LR (ppm)"

    # a sub-ppm run switches the axis to ppb
    second = new_run(engine, mode="afb", asymmetry=None)
    add_snapshots(engine, second, [7, 8], scale=0.01)
    feed.poll()
    callback.callback()
    np.testing.assert_allclose(source.data["x"], [7, 8])
    expected = [10 * (5 + 10 * math.sin(2 * k) / math.sqrt(k)) for k in (8, 9)]
    np.testing.assert_allclose(source.data["y"], expected)
    assert "A_FB" in plot.title.text and f"run {second}" in plot.title.text
    assert plot.yaxis[0].axis_label == "A_FB (ppb)"

    (destroyed,) = doc.session_destroyed_callbacks
    destroyed(None)
    assert feed.sessions == 0


def test_the_shifter_page_reads_at_a_glance(engine: Engine, db_url: str) -> None:
    """From the database: the beam badge from the archived beam PVs (a switch-on sample
    from before the run counts), pending minirun statistics, a table as tall as its
    channels, "cumulative" on the running plot, and one disconnect message."""
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2, 3])
    add_samples(engine, "MUPNC:BEAM:ON", [-3600], 1.0)  # switched on an hour before
    add_samples(engine, "MUPNC:BEAM:TRIP", [2], 1.0)
    add_samples(engine, "MUPNC:BEAM:RATE", [2.5], 2.5e7)
    channels = {f"det{i:02d}": (1e-6, 1e-6) for i in range(14)} | {"combined": (1e-6, 3e-7)}
    set_channels(engine, run, channels)
    doc = shifter_page(db_url)
    beam = by_name(doc, "beam_state").text
    assert "beam: TRIPPED · measured 25 MHz" in beam and "(setpoint 100 MHz)" in beam, beam
    assert "Minirun pulls: pending · ~" in by_name(doc, "pull_plot").title.text
    assert len(by_name(doc, "channel_source").data["shown"]) == 15
    assert by_name(doc, "channel_table").height >= 30 + 25 * 15  # every row, no scrolling
    assert "(cumulative)" in by_name(doc, "asym_plot").title.text
    assert doc.config.notify_connection_status is False  # the banner is the one message


def test_a_replay_is_shown_as_the_replay_of_its_run(engine: Engine, feed: Feed) -> None:
    original = new_run(engine, state="ended")
    replay = new_run(engine, replay_of=original)
    add_snapshots(engine, replay, [1, 2])
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    assert len(by_name(doc, "asym_source").data["x"]) == 2  # streamed as live data
    assert f"{replay} (replay of run {original}, A_LR)" in by_name(doc, "run_info").text
    history = Document()
    make_history(history, engine)
    assert (
        f"Run {replay}</b> · replay of run {original} ·" in by_name(history, "history_summary").text
    )


def test_unit_switch_rescales_and_panning_stops_the_y_follow(engine: Engine, feed: Feed) -> None:
    run = new_run(engine, asymmetry=None)
    add_snapshots(engine, run, [1, 2])  # ~5 ppm
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    source, plot = by_name(doc, "asym_source"), by_name(doc, "asym_plot")
    y_ppm = list(source.data["y"])
    (tick,) = doc.session_callbacks
    add_snapshots(engine, run, [3], scale=1e4)  # ~5 %: the whole curve goes to percent
    feed.poll()
    tick.callback()
    assert plot.yaxis[0].axis_label == "A_LR (%)"
    np.testing.assert_allclose(source.data["y"][:2], np.array(y_ppm) * 1e-4)
    y = by_name(doc, "asym_y_range")
    assert y.start <= min(source.data["lo"][:3]) and y.end >= max(source.data["hi"][:3])
    follow = next(m for m in doc.select({"type": Toggle}) if m.label == "auto y-range")
    plot._trigger_event(PanStart(plot))
    assert not follow.active
    y.update(start=-100.0, end=100.0)  # the shifter's own zoom stays
    add_snapshots(engine, run, [4], scale=1e4)
    feed.poll()
    tick.callback()
    assert (y.start, y.end) == (-100.0, 100.0)
    plot._trigger_event(Reset(plot))
    assert follow.active and y.end < 100.0


def test_sessions_share_one_feed_and_release_their_cursors(engine: Engine, feed: Feed) -> None:
    run = new_run(engine)
    add_snapshots(engine, run, [1, 2])
    feed.poll()
    docs = [Document() for _ in range(5)]
    for doc in docs:
        make_document(doc, feed)
    assert feed.sessions == 5
    for doc in docs[:3]:
        (destroyed,) = doc.session_destroyed_callbacks
        destroyed(None)
    assert feed.sessions == 2


def test_history_document_with_reference(engine: Engine) -> None:
    run = new_run(engine, state="ended")
    add_snapshots(engine, run, [1, 2, 3])
    means = add_miniruns(engine, run, 8, value=5e-6, error=2e-6)
    set_channels(engine, run, {"combined": (5.2e-6, 0.7e-6)}, chi2_ndf=0.8)
    reference = new_run(engine)
    add_miniruns(engine, reference, 4, value=4e-6, error=2e-6, seed=5)
    set_channels(engine, reference, {"combined": (4.0e-6, 1.0e-6)})
    doc = Document()
    make_history(doc, engine)
    pick, ref = by_name(doc, "run_select"), by_name(doc, "reference_select")
    assert pick.value == str(reference) and ref.value == "none"  # newest run first
    pick.value = str(run)
    ref.value = str(reference)
    minis = by_name(doc, "minirun_source").data
    np.testing.assert_allclose(minis["y"], means * 1e6)
    np.testing.assert_allclose(
        by_name(doc, "reference_minirun_source").data["x"], np.arange(4) + 0.2
    )
    assert len(by_name(doc, "history_running").data["x"]) == 3
    summary = by_name(doc, "history_summary").text
    assert "5.20 ± 0.70 ppm" in summary and "χ²/ndf of 8 miniruns 0.80" in summary
    assert f"reference run {reference}" in summary and "+0.98 σ" in summary
    table = by_name(doc, "minirun_table").data
    assert table["index"] == list(range(8)) and len(table["colour"]) == 8
    minirun_y = by_name(doc, "minirun_source").data
    y = by_name(doc, "minirun_plot").y_range
    assert y.start < min(0, *minirun_y["lo"]) and y.end > max(minirun_y["hi"])
    assert difference_sigma(Channel("a", 1.0, 3.0), Channel("b", 0.0, 4.0)) == pytest.approx(0.2)
    assert difference_sigma(Channel("a", None, 3.0), Channel("b", 0.0, 4.0)) is None
    empty = minirun_table((MinirunMean(0, 10, 1e-6, 1e-6),), PPM)
    assert np.isnan(empty["pull"]).all()
    # minirun numbers are whole: no tick between two miniruns
    for plot in (by_name(doc, "minirun_plot"), *(by_name(doc, f"slope_plot_{v}") for v in "xy")):
        assert plot.xaxis[0].ticker.min_interval == 1
    assert "(cumulative" in by_name(doc, "history_running_plot").title.text


def test_a_history_difference_is_coloured_only_when_significant() -> None:
    assert difference_html(-0.28) == "-0.28 σ"  # unremarkable: plain text
    assert "color:#c00000" in difference_html(3.4) and "+3.40 σ" in difference_html(3.4)
    record = HistoryRecord(run_info(), Channel("combined", 5e-6, 1e-6), (), ())
    close = HistoryRecord(run_info(number=8), Channel("combined", 5.4e-6, 1e-6), (), ())
    text = summary_html(record, close, PPM)
    line = text.split("<br>")[-1]
    assert line.endswith("; difference -0.28 σ") and "color" not in line.split("</span>")[1]


# --- alarms --------------------------------------------------------------------------------------


def test_alarm_list_banner_and_acknowledge(engine: Engine) -> None:
    later = T0 + timedelta(minutes=5)
    minor = add_alarm(engine, "BEAM:RATE", "MINOR", "rate low", since=T0)
    major = add_alarm(engine, "HEL:LOCK", "MAJOR", "<b>decoder</b> lost lock", since=later)
    add_alarm(engine, "OLD", "MAJOR", "gone", state="cleared", acknowledged=True)
    latched = add_alarm(engine, "TRIP", "INVALID", "tripped", state="cleared")
    with Session(engine) as session:
        alarms = displayed_alarms(session)
    # cleared and acknowledged alarms leave; a cleared one stays until acknowledged
    assert [a.id for a in alarms] == [latched, major, minor]
    now = later + timedelta(seconds=10)
    text, severity = banner_text(alarms, now)
    assert severity == "MAJOR" and text.startswith("MAJOR: HEL:LOCK — <b>decoder</b> lost lock")
    assert "NOT ACKNOWLEDGED" in text and "+1 more" in text
    with transaction(engine) as session:
        assert acknowledge(session, [major, minor, 999], "  Ada  ", now) == 2
    with transaction(engine) as session:
        assert acknowledge(session, [major], "Bob", now) == 0  # already acknowledged
        alarms = displayed_alarms(session)
        transitions = session.scalars(select(AlarmTransition)).all()
        assert sorted(t.alarm_id for t in transitions) == sorted([major, minor])
        assert {t.who for t in transitions} == {"Ada"}
        assert all(session.get(Alarm, i).state == "active" for i in (major, minor))
    text, severity = banner_text(alarms, now)
    assert severity == "MAJOR" and "(since 12:05:00 UTC, acknowledged)" in text
    assert banner_text((), now) == ("No active alarms", "NO_ALARM")
    # nothing stands but a cleared alarm nobody acknowledged: latched, in its colours
    text, severity = banner_text(tuple(a for a in alarms if a.id == latched), now)
    assert severity == "INVALID" and "cleared, NOT ACKNOWLEDGED: TRIP INVALID" in text
    with transaction(engine) as session:
        assert acknowledge(session, [latched], "Ada", now) == 1
        alarms = displayed_alarms(session)
    assert latched not in [a.id for a in alarms]


def test_the_banner_shows_the_current_runs_alarms_and_names_their_run(engine: Engine) -> None:
    """An old replay's standing MAJOR alarm is not the new run's: the page shows the current
    run's alarms and those of no run (a disconnected IOC), each with its run named."""
    old, current = new_run(engine), new_run(engine)
    add_alarm(engine, "STUCK", "MAJOR", "stuck", since=T0, run=old)
    mine = add_alarm(engine, "PHASE", "MINOR", "phase", since=T0, run=current)
    ioc = add_alarm(engine, "IOC", "MINOR", "disconnected", since=T0 + timedelta(seconds=1))
    with Session(engine) as session:
        shown = displayed_alarms(session, current)
        every = displayed_alarms(session)
    assert {a.id for a in shown} == {mine, ioc} and len(every) == 3
    text, severity = banner_text(shown, T0 + timedelta(seconds=5))
    assert severity == "MINOR" and text.startswith("MINOR: IOC — disconnected")
    text, _ = banner_text(tuple(a for a in shown if a.id == mine), T0 + timedelta(seconds=5))
    assert text.startswith(f"MINOR: PHASE (run {current}) — phase")


def test_alarm_panel_acknowledges_through_the_feed(engine: Engine, feed: Feed) -> None:
    new_run(engine)
    first = add_alarm(engine, "A", "MINOR", "<script>alert(1)</script>")
    second = add_alarm(engine, "B", "MAJOR", "second")
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    banner = by_name(doc, "alarm_banner")
    assert banner.render_as_text and banner.text.startswith("MAJOR: B — second")
    assert banner.styles["background"] == "#FF0000"
    source = by_name(doc, "alarm_source")
    assert source.data["id"] == [second, first]
    assert source.data["message"][1] == "<script>alert(1)</script>"  # a table cell, as text
    source.selected.indices = [1]
    ack_selected = next(b for b in doc.select({"type": Button}) if "selected" in b.label)
    ack_selected._trigger_event(ButtonClick(ack_selected))
    feed.poll()  # runs the queued acknowledgement, then reads the alarms again
    (report,) = [c for c in doc.session_callbacks if isinstance(c, NextTickCallback)]
    report.callback()
    assert by_name(doc, "alarm_feedback").text == "1 alarm(s) acknowledged"
    (tick,) = [c for c in doc.session_callbacks if not isinstance(c, NextTickCallback)]
    tick.callback()
    assert source.data["ack"] == ["NO", "yes"]
    with Session(engine) as session:
        assert (
            session.get(Alarm, first).acknowledged and not session.get(Alarm, second).acknowledged
        )
        (transition,) = session.scalars(select(AlarmTransition)).all()
        assert transition.who == "shifter" and transition.alarm_id == first


def test_the_report_of_a_blinded_run_hides_what_was_injected(engine: Engine) -> None:
    """``report --json`` of a blinded run names neither the injected nor the expected
    asymmetry (either gives |A| away); an unblinded run's report gives both."""
    from mupnc.db.summary import run_summary

    blinded, plain = new_run(engine, blinded=True), new_run(engine)
    with Session(engine) as session:
        hidden, shown = run_summary(session, blinded), run_summary(session, plain)
    assert "injected_asymmetry" not in hidden and "expected_asymmetry" not in hidden
    assert shown["injected_asymmetry"] == 5e-6 and shown["expected_asymmetry"] == 5e-6


def test_the_beam_panel_regressed_series_and_slopes_of_a_steered_run(tmp_path: Path) -> None:
    """The documented steered-beam run (docs/examples/hc-beam.toml) on the shifter page: the
    beam table in nm, nrad and ppb, the regressed series beside the raw one, the correction
    in sigma; on the history page the slopes per minirun."""
    from mupnc.cli import main

    db = f"sqlite:///{tmp_path / 'hc.db'}"
    config = str(Path(__file__).parents[1] / "docs" / "examples" / "hc-beam.toml")
    sim = ["sim", "--config", config, "--seconds", "120", "--minirun", "15", "--seed", "4"]
    assert main(["--db", db, *sim]) == 0
    feed = Feed(db)
    feed.poll()
    doc = Document()
    make_document(doc, feed)
    table = by_name(doc, "beam_difference_source").data
    assert table["variable"] == ["x", "y", "xp", "yp", "dpp"]
    assert table["unit"] == ["nm", "nm", "nrad", "nrad", "ppb"]
    x, error = table["value"][0], table["error"][0]
    assert abs(x - 20_000) < 3 * error and table["pull"][0] > 10
    raw, regressed = by_name(doc, "asym_source").data, by_name(doc, "regressed_source").data
    assert len(regressed["x"]) > 0 and len(regressed["x"]) <= len(raw["x"])
    correction = by_name(doc, "regression_correction").text
    assert "σ" in correction and "regression moves the asymmetry by" in correction
    assert "regressed" in by_name(doc, "result_box").text
    good_beam = re.search(
        r"good-beam time</th><td>(1\d\d s|2 min)<", by_name(doc, "result_box").text
    )
    assert good_beam, "a rotator interval is 0.5 s of windows: about 120 s of good beam"

    history = Document()
    make_history(history, make_engine(db))
    slopes = by_name(history, "slopes_x").data
    assert len(slopes["x"]) >= 2 and (np.asarray(slopes["hi"]) > np.asarray(slopes["lo"])).all()
    plot = by_name(history, "slope_plot_x")
    assert plot.yaxis[0].axis_label == "∂A/∂x (ppm/µm)"
    feed._engine.dispose()


def test_a_new_run_carries_both_efficiencies_to_the_run_information(tmp_path) -> None:
    """``mupnc.runs.new_run`` stores the planner's efficiency beside the settings (not in
    them: an IOC's autosave compares the settings); the page reads both from the run."""
    from mupnc.db.models import Run
    from mupnc.runs import new_run as allocate
    from mupnc.runs import run_config
    from mupnc.sim.source import SourceConfig

    db = f"sqlite:///{tmp_path / 'eff.db'}"
    number = allocate(db, SourceConfig())
    engine = make_engine(db)
    with transaction(engine) as session:
        info = run_info_of(session.get(Run, number))
    engine.dispose()
    assert info.efficiency == pytest.approx(2e-3)  # the shipped A_LR map: 8 x 2.5e-4
    assert info.planner_efficiency == pytest.approx(1e-6)
    assert "planner_efficiency" not in run_config(SourceConfig())
