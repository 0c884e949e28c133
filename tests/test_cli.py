"""The command-line contract: one-line errors, exit status 2 for bad input, 1 at run time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def mupnc(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mupnc", "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--asymmetry", "2"],
        ["demo", "--rate", "-5"],
        ["demo", "--pattern", "nonsense"],
        ["report", "not-a-number"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_give_one_line_and_status_2(args, db):
    result = mupnc(*args, db=db)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("mupnc: error:")


def test_missing_schema_is_refused_with_advice(db):
    result = mupnc("runs", db=db)
    assert result.returncode == 1
    assert "mupnc db upgrade" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_run_and_empty_list(db):
    assert mupnc("db", "upgrade", db=db).returncode == 0
    assert json.loads(mupnc("runs", "--json", db=db).stdout) == []
    result = mupnc("report", "42", db=db)
    assert result.returncode == 1
    assert result.stderr.strip() == "mupnc: error: run 42 is not in the database"


def test_broken_channel_map_names_the_file(tmp_path, db):
    bad = tmp_path / "map.toml"
    bad.write_text('mode = "alr"\n[[channels]]\nname = "a"\nrole = "sideways"\nacceptance = 0.1\n')
    result = mupnc("demo", "--channel-map", str(bad), "--duration", "1", db=db)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "role" in result.stderr
