"""The command line as a newcomer types it: ``--db`` after the subcommand, negative values,
a mistyped SQLite path, a pipe closed early (each failed before)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from support.cli import MUPNC, mupnc, one_error_line, sqlite_with_schema


def test_db_and_verbose_go_before_or_after_the_subcommand(tmp_path: Path) -> None:
    db = sqlite_with_schema(tmp_path / "x.db")
    after = mupnc("runs", "--json", "--db", db)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == []
    assert mupnc("runs", "-v", "--json", db=db).returncode == 0


def test_negative_numbers_are_values(tmp_path: Path) -> None:
    done = mupnc("plan", "--mode", "afb", "--asymmetry", "-5e-5", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["asymmetry"] == -5e-5


def test_a_mistyped_sqlite_path_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "mupcn.db"
    line = one_error_line(mupnc("runs", db=f"sqlite:///{typo}"), 1)
    assert f"no database at {typo.resolve()}" in line
    assert not typo.exists()
    relative = one_error_line(mupnc("report", "1", db="sqlite:///typo.db", cwd=tmp_path), 1)
    assert str((tmp_path / "typo.db").resolve()) in relative
    made = mupnc("db", "upgrade", db=f"sqlite:///{typo}")  # db upgrade, demo, sim create it
    assert made.returncode == 0 and typo.exists()


def test_a_pipe_closed_early_ends_quietly() -> None:
    """``mupnc ioc --list-pvs | head -1``: hundreds of lines into a pipe whose reader has
    gone (it printed "Broken pipe" as an error, exit 1)."""
    shell = f"'{MUPNC}' ioc --list-pvs | head -1 > /dev/null"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_demo_hint_is_a_command_that_works_without_activation() -> None:
    """After ``make demo`` in a shell without the venv activated, the summary hint ends
    that ends the demo must run as printed (it said ``mupnc``, not on the PATH)."""
    repo = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    hint = subprocess.run(
        [sys.executable, "-c", "from mupnc.orchestrate import console_command as c; print(c())"],
        capture_output=True, text=True, cwd=repo, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    done = subprocess.run(["bash", "-c", f"{hint} --help"], capture_output=True, cwd=repo, env=env)
    assert done.returncode == 0, (hint, done.stderr)


def test_a_dashboard_port_in_use_is_refused_before_a_run_is_made(tmp_path: Path) -> None:
    """A second demo on a taken port: one line, exit 2, and no junk run (it printed the
    other run's address, a 20-line traceback, and left a run behind)."""
    db = sqlite_with_schema(tmp_path / "d.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(mupnc("demo", "--port", str(port), "--duration", "1", db=db), 2)
    assert f"--port {port}: in use" in line
    assert json.loads(mupnc("runs", "--json", db=db).stdout) == []
