"""Beam modulation in the record: ``mupnc sim`` stores the dithering-corrected asymmetry and
the patterns cut for the cycles; ``report`` and ``reanalyze`` give them."""

from __future__ import annotations

import json

from mupnc.cli import main

STEERED = """\
mode = "alr"
[beam]
rate = 1e10
[detector]
asymmetry = 1e-3
[beamline.x]
hc_difference = 0.02        # mm: 20 um between the spin states
[beamline.sensitivity]
default = { x = 0.1 }       # 10 % per mm: a false asymmetry of 2e-3 (measured)
[modulation]
enabled = true
period = 20.0
"""


def test_the_report_gives_the_dithered_asymmetry_where_the_raw_one_is_off(tmp_path, capsys):
    path = tmp_path / "steered.toml"
    path.write_text(STEERED)
    db = f"sqlite:///{tmp_path / 'mod.db'}"
    assert main(["--db", db, "sim", "--config", str(path), "--seconds", "60", "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "report", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    raw, dithered = report["asymmetry"], report["dithered"]
    assert (raw["value"] - 1e-3) / raw["error"] > 5  # the steering's bias
    assert abs(dithered["value"] - 1e-3) < 3 * dithered["error"]
    assert len(report["dithered_channels"]) == 8
    # cycles at 20 s and 40 s, 10 s each: 20 s of quartets at 240 Hz (60 a second), and
    # at most a pattern more at each edge of a cycle
    assert 1200 <= report["patterns_modulation"] <= 1204
    assert main(["--db", db, "reanalyze", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (
        again["dithered"] == dithered
        and again["patterns_modulation"] == report["patterns_modulation"]
    )
    assert main(["--db", db, "report", "1"]) == 0
    assert "patterns in modulation cycles, cut from the asymmetry" in capsys.readouterr().out
