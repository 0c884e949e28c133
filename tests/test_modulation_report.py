"""Beam modulation in the record: ``mupnc sim`` stores the dithering-corrected asymmetry and
the patterns cut for the cycles, ``report`` and ``reanalyze`` give them; the monitor's
recorder stores every cycle and its sensitivities."""

from __future__ import annotations

import json
import math

from sqlalchemy import select
from support.simulated import settings_of

from mupnc.cli import main
from mupnc.db.models import CUMULATIVE, CoilResponse, DitherSensitivity, ModulationCycle
from mupnc.db.session import transaction
from mupnc.db.store import allocate_run
from mupnc.monitor.analysis.beam_results import COMBINED
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.recorder import RunRecorder
from mupnc.runs import run_config
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.modulation import ModulationConfig
from mupnc.sim.source import SourceConfig, WindowSource

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
    modulation = report["modulation"]
    assert (modulation["cycles"], modulation["usable"], modulation["dead_coils"]) == (2, 2, [])
    combined = {s["variable"]: s for s in modulation["sensitivities"] if s["channel"] == "combined"}
    x = combined["x"]
    assert abs(x["value"] - 0.1) < 3 * x["error"]  # the steering is seen at 10 % per mm
    assert abs(x["difference"]) < 3 * x["difference_error"]  # regression agrees
    assert len(modulation["sensitivities"]) == 9 * 5  # 8 channels and combined, 5 variables
    assert main(["--db", db, "reanalyze", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (
        again["dithered"] == dithered
        and again["patterns_modulation"] == report["patterns_modulation"]
        and again["modulation"] == modulation
    )
    assert main(["--db", db, "report", "1"]) == 0
    assert "patterns in modulation cycles, cut from the asymmetry" in capsys.readouterr().out


def test_the_record_holds_every_cycle_as_it_was_last_analysed(engine):
    """Flushed every second (mid-cycle) with miniruns of 100 good patterns: the
    stored cycles, responses and sensitivities equal the end-of-run analysis; the run's
    combined sensitivity to x sits on the simulated 0.1 / mm with its regression minus
    dithering difference (Chan/Pébay slopes of the same run) within 3 sigma of zero."""
    config = SourceConfig(
        muon_rate=1e10,
        beamline=BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": {"x": 0.1}}),
        modulation=ModulationConfig(enabled=True, period=3.0, coil_time=0.5),
        seed=21,
    )
    with transaction(engine) as session:
        run = allocate_run(session, source="sim", mode="alr", config=run_config(config))
    analysis = RunAnalysis(settings_of(config, run), 100)
    recorder = RunRecorder(engine, run)
    source = WindowSource(config)
    for _ in range(30):  # 30 x 240 windows: cycles from 3 s, 6 s, 9 s... (8 complete)
        analysis.feed(source.next_block_of(240).block)
        assert recorder.flush(*analysis.recordable(), "running")
    analysis.finish()
    assert recorder.flush(*analysis.recordable(), "ended")
    result = analysis.result()
    with transaction(engine) as session:
        cycles = session.scalars(
            select(ModulationCycle)
            .where(ModulationCycle.run == run)
            .order_by(ModulationCycle.cycle)
        ).all()
        rows = session.scalars(select(DitherSensitivity).where(DitherSensitivity.run == run)).all()
        stored = {(r.cycle, r.channel, r.variable): r for r in rows}
        assert [(c.cycle, c.minirun, c.windows, c.dead_coils, c.skipped or "") for c in cycles] == [
            (c.cycle, c.minirun, sum(c.windows.values()), "", c.skipped)
            for c in result.dither_cycles
        ]
        assert len({c.minirun for c in cycles}) > 1
        assert sum(c.coils == 5 for c in cycles) >= 8
        analysed = [
            (c.cycle, c.sensitivities, c.regression_difference) for c in result.dither_cycles
        ]
        analysed.append((CUMULATIVE, result.dither_sensitivities, result.dither_difference))
        assert len(stored) == sum(len(s) for _, s, _ in analysed)
        for cycle, sensitivities, differences in analysed:
            for key, m in sensitivities.items():
                row = stored[(cycle, *key)]
                assert (row.value, row.error, row.n) == (_nan(m.value), _nan(m.error), m.n)
                d = differences.get(key)
                assert (row.difference, row.difference_error) == (
                    (None, None) if d is None else (_nan(d.value), _nan(d.error))
                )
        responses = session.scalars(select(CoilResponse).where(CoilResponse.run == run)).all()
        by_key = {(r.cycle, r.kind, r.coil, r.target): r for r in responses}
        expected = [
            ((c.cycle, kind, *key), m)
            for c in result.dither_cycles
            for kind, table in (("beam", c.response), ("detector", c.detector_response))
            for key, m in table.items()
        ]
        assert len(by_key) == len(expected) == len(result.dither_cycles) * 5 * (5 + 9)
        for key, m in expected:
            assert (by_key[key].value, by_key[key].error, by_key[key].n) == (
                _nan(m.value), _nan(m.error), m.n,
            )  # fmt: skip
        coil_1_x = by_key[(0, "beam", "coil_1", "x")]  # 1 um per mA (sim/modulation.py)
        assert abs(coil_1_x.value - 1e-3) < 3 * coil_1_x.error
        run_x = stored[(CUMULATIVE, COMBINED, "x")]
        assert abs(run_x.value - 0.1) < 3 * run_x.error
        assert abs(run_x.difference) < 3 * run_x.difference_error


def _nan(x: float) -> float | None:
    return None if math.isnan(x) else x
