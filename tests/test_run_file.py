"""One run configuration on the command line: ``--config RUN.toml`` (tables of
``mupnc/run_file.py``), flags overriding it, the whole configuration stored with the run,
and the report's expected asymmetry (never for a blinded run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import mupnc

from mupnc.cli import build_parser
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
