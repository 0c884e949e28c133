"""One run configuration on the command line: ``--config RUN.toml`` (tables of
``mupnc/run_file.py``), flags overriding it, the whole configuration stored with the run,
and the report's expected asymmetry (never for a blinded run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import mupnc

from mupnc.cli import build_parser
from mupnc.db.models import Run
from mupnc.db.session import make_engine, transaction
from mupnc.runs import source_config

RUN = """\
mode = "afb"
seed = 4

[reversal]
scheme = "slow"
flip_period = 0.5
ramp_time = 0.05
settle_time = 0.05

[helicity]
window_rate = 240.0

[beam]
rate = 1e9
polarization = 0.8
charge_asymmetry = 1e-4

[detector]
asymmetry = 0.05
signal_fraction = 0.5
z = 30
"""


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(RUN)
    return path


def test_the_file_sets_the_run_and_flags_override_it(run_file: Path) -> None:
    args = build_parser().parse_args(["sim", "--windows", "10", "--config", str(run_file)])
    config = source_config(args)
    assert (config.mode, config.scheme, config.seed, config.z) == ("afb", "slow", 4, 30)
    assert (config.muon_rate, config.polarization, config.signal_fraction) == (1e9, 0.8, 0.5)
    assert (config.flip_period, config.charge_asymmetry) == (0.5, 1e-4)
    flags = ["--polarization", "0.6", "--scheme", "kick", "--rate", "2e9"]
    args = build_parser().parse_args(["sim", "--windows", "10", "--config", str(run_file), *flags])
    config = source_config(args)
    assert (config.polarization, config.scheme, config.muon_rate) == (0.6, "kick", 2e9)
    assert config.asymmetry == 0.05  # from the file still


def test_a_simulated_run_stores_its_configuration_and_reports_what_to_expect(
    run_file: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    made = mupnc("sim", "--seconds", "2", "--config", str(run_file), "--preset", "flat", db=db)
    assert made.returncode == 0, made.stderr
    report = json.loads(mupnc("report", "1", "--json", db=db).stdout)
    assert report["scheme"] == "slow"
    assert report["expected_asymmetry"] == pytest.approx(0.05 * 0.5)  # A * D, flat preset
    assert report["asymmetry"]["estimator"] in ("counting", "integrating")
    assert report["injected_asymmetry"] == 0.05


def test_flags_alone_keep_their_defaults(tmp_path: Path) -> None:
    config = source_config(build_parser().parse_args(["sim", "--windows", "10"]))
    assert (config.mode, config.scheme, config.muon_rate, config.polarization) == (
        "alr",
        "fast",
        1e8,
        0.9,
    )


@pytest.mark.parametrize("scheme", ["slow", "kick"])
def test_slow_and_kick_runs_store_their_rotator_and_reanalyse_identically(
    run_file: Path, tmp_path: Path, scheme: str
) -> None:
    """The rotator pattern and the kick's precession per turn (from the momentum) are stored
    with the run; a reanalysis from the recording, which reads them back, gives the live
    analysis to the last bit."""
    db = f"sqlite:///{tmp_path / 'rotator.db'}"
    made = mupnc("sim", "--seconds", "8", "--config", str(run_file), "--scheme", scheme, db=db)
    assert made.returncode == 0, made.stderr
    with transaction(make_engine(db)) as session:
        config = session.get(Run, 1).config
    assert config["rotator_pattern"] == "quartet"
    assert config["kick_precession"] == pytest.approx(0.43525, abs=1e-5)  # 29 MeV/c
    assert config["kick_turns"] == [0, 414]
    live = json.loads(mupnc("report", "1", "--json", db=db).stdout)
    again = json.loads(mupnc("reanalyze", "1", "--json", db=db).stdout)
    assert live["patterns_good"] > 0 and live["helicity_errors"] == again["helicity_errors"]
    assert again["asymmetry"] == live["asymmetry"]
    assert again["null_asymmetries"] == live["null_asymmetries"]
    assert set(live["null_asymmetries"]) >= {"null_even_odd", "null_half"}


def test_a_pair_run_recorded_before_rotator_patterns_is_analysed_as_pairs(
    run_file: Path, tmp_path: Path
) -> None:
    """A slow run stored without the rotator keys (mupnc before 0.3, which alternated + -)
    is reanalysed as a pair run: no helicity errors, the live result again."""
    run_file.write_text(RUN.replace("[reversal]\n", '[reversal]\nrotator_pattern = "pair"\n'))
    db = f"sqlite:///{tmp_path / 'pairs.db'}"
    assert mupnc("sim", "--seconds", "8", "--config", str(run_file), db=db).returncode == 0
    with transaction(make_engine(db)) as session:
        run = session.get(Run, 1)
        run.config = {
            k: v for k, v in run.config.items() if k not in ("rotator_pattern", "kick_precession")
        }
    live = json.loads(mupnc("report", "1", "--json", db=db).stdout)
    again = json.loads(mupnc("reanalyze", "1", "--json", db=db).stdout)
    assert not any(again["helicity_errors"].values()) and again["patterns_good"] > 0
    assert again["asymmetry"] == live["asymmetry"]
    assert set(again["null_asymmetries"]) == {"null_even_odd"}
