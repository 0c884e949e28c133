"""The beam-modulation panel of the shifter page: pure columns and status, and the page of a
run made by ``mupnc sim`` with modulation cycles (no browser)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from dashboard_data import add_snapshots, by_name, new_run, shifter_page
from support.cli import sqlite_with_schema

from mupnc.dashboards.columns import difference_pull_columns, sensitivity_columns
from mupnc.dashboards.modulation_panel import NO_CYCLE, modulation_html
from mupnc.dashboards.records import DitherSlope, Modulation, ModulationCycle
from mupnc.db.session import make_engine

SIM_CONFIG = """\
[beam]
rate = 1e10
[beamline.x]
hc_difference = 0.02
[beamline.sensitivity]
default = { x = 0.1, y = -0.05 }
[modulation]
enabled = true
period = 6.0
coil_time = 1.0
"""
"""Cycles every 6 s of five 1 s coils; the detectors see +10 %/mm in x and -5 %/mm in y."""


def cycle(number: int, slopes: tuple[DitherSlope, ...], **kw) -> ModulationCycle:
    fields = dict(minirun=0, windows=1200, coils=5, dead_coils=(), skipped="")
    return ModulationCycle(number, sensitivities=slopes, **(fields | kw))


# --- pure ----------------------------------------------------------------------------------------


def test_the_table_reads_in_ppm_per_micron_from_the_newest_usable_cycle() -> None:
    good = cycle(3, (DitherSlope("x", 0.1, 0.002, 0.01, 0.005), DitherSlope("dpp", 2.0, 0.5)))
    refused = cycle(4, (DitherSlope("x", None, None),), skipped="dead coil coil_1")
    run = (DitherSlope("x", 0.098, 0.001, -0.004, 0.002), DitherSlope("dpp", 2.1, 0.3))
    table = sensitivity_columns(Modulation((good, refused), run))
    assert table["variable"] == ["x", "dpp"] and table["unit"] == ["ppm/µm", "ppm/ppm"]
    assert table["cycle"] == pytest.approx([100.0, 2.0])  # cycle 3's: cycle 4 was refused
    assert table["cycle_error"] == pytest.approx([2.0, 0.5])
    assert table["run"] == pytest.approx([98.0, 2.1])
    assert table["difference"][0] == pytest.approx(-4.0) and table["pull"][0] == pytest.approx(-2)
    assert math.isnan(table["difference"][1]) and math.isnan(table["pull"][1])  # not compared
    assert sensitivity_columns(None) == {k: [] for k in table}


def test_the_difference_plot_has_the_usable_compared_cycles_in_their_errors() -> None:
    cycles = (
        cycle(0, (DitherSlope("x", 0.1, 0.002, 0.006, 0.002), DitherSlope("y", -0.05, 0.002))),
        cycle(1, (DitherSlope("x", 0.1, 0.002, 0.01, 0.002),), skipped="too few windows"),
        cycle(2, (DitherSlope("x", 0.1, 0.002, -0.004, 0.002),)),
    )
    x = difference_pull_columns(Modulation(cycles), "x")
    assert x["x"].tolist() == [0, 2] and x["y"] == pytest.approx([3.0, -2.0])
    assert len(difference_pull_columns(Modulation(cycles), "y")["x"]) == 0
    assert len(difference_pull_columns(None, "x")["x"]) == 0


def test_the_status_line_names_dead_coils_and_why_a_cycle_gave_nothing() -> None:
    assert NO_CYCLE in modulation_html(None)
    usable = cycle(0, (DitherSlope("x", 0.1, 0.002),))
    state = modulation_html(Modulation((usable,), (DitherSlope("x", 0.1, 0.002),)))
    assert "1 cycles, 1 usable" in state and "5 coils fitted, 1,200 windows" in state
    assert "DEAD" not in state and "NO SENSITIVITIES" not in state
    dead = cycle(1, (), coils=5, dead_coils=("coil_3",), skipped="dead coil <coil_3>")
    state = modulation_html(Modulation((usable, dead), (DitherSlope("x", 0.1, 0.002),)))
    assert "2 cycles, 1 usable" in state and "DEAD COIL coil_3" in state
    assert "NO SENSITIVITIES" in state and "dead coil &lt;coil_3&gt;" in state
    state = modulation_html(Modulation((dead,)))
    assert "run sensitivities: none yet" in state


# --- the page ------------------------------------------------------------------------------------


def test_a_run_without_modulation_gets_one_line(tmp_path: Path) -> None:
    url = sqlite_with_schema(tmp_path / "none.db")
    engine = make_engine(url)
    add_snapshots(engine, new_run(engine), [1, 2, 3])
    engine.dispose()
    doc = shifter_page(url)
    assert NO_CYCLE in by_name(doc, "modulation_state").text
    assert not by_name(doc, "modulation_details").visible


def test_a_simulated_modulation_run_on_the_shifter_page(tmp_path: Path) -> None:
    """``mupnc sim`` with a cycle every 6 s for 60 s: nine cycles, all usable; the run's x
    and y sensitivities within 3 sigma of the simulated +100 and -50 ppm/um, regression and
    dithering within 3 sigma of each other, a point per cycle and variable on the plot.
    (Over 150 seeds the run's sensitivities have pulls of mean 0 within their 0.08 band and
    width 0.89-1.05: ``bench/bench_dithering.py``.)"""
    from mupnc.cli import main

    db = f"sqlite:///{tmp_path / 'mod.db'}"
    config = tmp_path / "modulation.toml"
    config.write_text(SIM_CONFIG)
    assert main(["--db", db, "sim", "--config", str(config), "--seconds", "60", "--seed", "6"]) == 0
    doc = shifter_page(db)
    state = by_name(doc, "modulation_state").text
    assert "9 cycles, 9 usable" in state and "5 coils fitted" in state, state
    assert by_name(doc, "modulation_details").visible
    table = by_name(doc, "modulation_sensitivity_source").data
    assert table["variable"] == ["x", "y", "xp", "yp", "dpp"]
    row = dict(zip(table["variable"], range(5), strict=True))
    for variable, truth in (("x", 100.0), ("y", -50.0), ("xp", 0.0), ("yp", 0.0)):
        i = row[variable]
        assert abs(table["run"][i] - truth) < 3 * table["run_error"][i], (variable, table)
        assert abs(table["pull"][i]) < 3, (variable, table)
        assert table["run_error"][i] < table["cycle_error"][i]  # nine cycles beat one
    for variable in ("x", "y", "xp", "yp", "dpp"):
        points = by_name(doc, f"modulation_difference_{variable}").data
        assert len(points["x"]) == 9 and np.isfinite(points["y"]).all(), variable
    # the dithering-corrected results are not detector channels (they were listed as such,
    # each with a pull of ~25 sigma against the raw combined asymmetry)
    channels = by_name(doc, "channel_source").data["channel"]
    assert "combined" in channels and not any("dithered" in c for c in channels), channels
    box = by_name(doc, "result_box").text  # the corrected asymmetry is beside the others
    assert re.search(r"<th[^>]*>dithered</th><td>[-0-9.]+ ± [0-9.]+ ppm \(corrected", box), box
