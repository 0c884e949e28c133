"""The polarization panel of the shifter page: a run made by ``mupnc sim`` with an
incomplete spin flip, and a run without a polarimeter (no browser)."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard_data import by_name, shifter_page

from mupnc.cli import main
from mupnc.dashboards.polarization_panel import NO_POLARIMETER

FLIP = """\
mode = "afb"
[beam]
rate = 1e9
[detector]
asymmetry = 1e-2
[polarimeter]
enabled = true
fault_at = 20.0
fault_polarization_minus = -0.7
"""
"""A_FB, the - state's polarization 0.7 instead of 0.9 from 20 s on."""


def test_an_incomplete_flip_on_the_shifter_page(tmp_path: Path) -> None:
    """60 s in miniruns of 600 quartets (10 s): the first miniruns flip completely, the
    later ones show |P-| at 0.7 (error bars of ~1e-3); the state line gives the measured
    polarizations, an INCOMPLETE FLIP badge and the configured-polarization asymmetry;
    the result box names the measured polarization beside the configured one."""
    config = tmp_path / "flip.toml"
    config.write_text(FLIP)
    db = f"sqlite:///{tmp_path / 'flip.db'}"
    sim = ["sim", "--config", str(config), "--seconds", "60", "--seed", "7", "--minirun", "600"]
    assert main(["--db", db, *sim]) == 0
    doc = shifter_page(db)
    assert by_name(doc, "polarization_details").visible
    assert not by_name(doc, "polarization_none").visible
    state = by_name(doc, "polarization_state").text
    assert "INCOMPLETE FLIP" in state and "configured polarization would give" in state, state
    plus = by_name(doc, "polarization_plus").data
    minus = by_name(doc, "polarization_minus").data
    assert len(plus["x"]) == len(minus["x"]) == 6
    assert all(abs(y - 0.9) < 5 * (hi - y) for y, hi in zip(plus["y"], plus["hi"], strict=True))
    assert abs(minus["y"][0] - 0.9) < 0.01 and abs(minus["y"][-1] - 0.7) < 0.01
    box = by_name(doc, "result_box").text
    assert re.search(r"polarization</th><td>0\.\d{3} measured \(configured 0\.90\)", box), box


def test_a_run_without_a_polarimeter_gets_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'plain.db'}"
    assert main(["--db", db, "sim", "--seconds", "5", "--seed", "7"]) == 0
    doc = shifter_page(db)
    assert by_name(doc, "polarization_none").visible
    assert not by_name(doc, "polarization_details").visible
    assert by_name(doc, "polarization_none").text == NO_POLARIMETER
    assert "polarization</th><td>" not in by_name(doc, "result_box").text
