"""The command-line contract: one-line errors, exit status 2 for bad input, 1 at run time;
and the forked runs of :func:`support.cli.run_all` (the bad-input tables of
test_cli_errors.py and test_config_errors.py) give what the console script gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.cli import mupnc, run_all, sqlite_with_schema


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


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


def test_forked_runs_are_the_console_script(tmp_path):
    """Status, output and error alike whether the command succeeds, fails at run time or
    refuses its arguments; the database from ``--db`` or ``MUPNC_DB``; relative paths in
    the command's own working folder."""
    db = sqlite_with_schema(tmp_path / "schema.db")
    with_env = {**os.environ, "MUPNC_DB": db}
    jobs = {
        "success": (["--db", db, "runs", "--json"], None),
        "bad input": (["--db", db, "report", "not-a-number"], None),
        "run time, database from the environment": (["report", "42"], with_env),
        "relative path": (["--db", db, "import", "missing.parquet"], None),
    }
    forked = run_all(jobs, tmp_path)
    for key, (args, env) in jobs.items():
        real = mupnc(*args, env=env, cwd=tmp_path)
        assert forked[key].args == real.args, key
        assert (forked[key].returncode, forked[key].stdout, forked[key].stderr) == (
            real.returncode,
            real.stdout,
            real.stderr,
        ), key
    assert forked["success"].stdout.strip() == "[]"
    assert [forked[k].returncode for k in jobs] == [0, 2, 1, 2]


def test_every_command_sets_the_ca_array_limit_unless_the_environment_does(monkeypatch, db):
    """A hand-started process (``mupnc monitor`` on a host) gets the 100 MB array limit
    that the demo's children get (pyepics alone gives 16 MB); a limit the site sets wins."""
    from mupnc.cli import main
    from mupnc.epics_env import MAX_ARRAY_BYTES

    monkeypatch.delenv("EPICS_CA_MAX_ARRAY_BYTES", raising=False)
    assert main(["--db", db, "db", "upgrade"]) == 0
    assert os.environ["EPICS_CA_MAX_ARRAY_BYTES"] == str(MAX_ARRAY_BYTES)
    monkeypatch.setenv("EPICS_CA_MAX_ARRAY_BYTES", "2000000")
    assert main(["--db", db, "db", "upgrade"]) == 0
    assert os.environ["EPICS_CA_MAX_ARRAY_BYTES"] == "2000000"


@pytest.mark.parametrize("module", ["datetime", "numpy", "sqlalchemy", "mupnc.cli"])
def test_a_ctrl_c_while_the_command_loads_exits_quietly_with_130(db, module):
    """``datetime`` is the case CI met: numpy's C extension imports it, and a
    KeyboardInterrupt raised there came out as an ImportError, a traceback and status 1."""
    here = os.path.join(os.path.dirname(__file__), "support", "interrupt_at_import")
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "mupnc", "--db", db, "runs"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, "INTERRUPT_AT_IMPORT": module},
        timeout=60,
    )
    assert (result.returncode, result.stderr, result.stdout) == (130, "", "")
