"""Running ``mupnc`` from the tests, and the checks its error output must pass.

:func:`mupnc` starts the real console script, as a user does.  :func:`run_all` runs many
commands (the bad-input tables) each in a process of its own, forked from one interpreter
that has imported :mod:`mupnc.cli` once (:mod:`support.forked_cli`): an interpreter start
with the imports costs ~1 s of CPU, a fork a few milliseconds.  Each forked command runs
what the console script runs, in its own working folder and environment, with its own
output, error and exit status; ``tests/test_cli.py`` checks that both give the same.
:func:`in_process` calls :func:`mupnc.cli.main` in the test process itself.
"""

from __future__ import annotations

import json
import locale
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mupnc.cli import main
from mupnc.db.session import create_schema, make_engine

MUPNC = str(Path(sys.executable).with_name("mupnc"))
FORKED = Path(__file__).with_name("forked_cli.py")


def mupnc(
    *args: str,
    db: str | None = None,
    env: dict | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """``mupnc [--db DB] ARGS`` through the console script; output as text."""
    command = [MUPNC, *(["--db", db] if db is not None else []), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def sqlite_with_schema(path: Path) -> str:
    """The URL of a new SQLite database at ``path`` with the mupnc schema (``db upgrade``)."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    return url


def mupnc_replay(db: str, run: int, *options: str, env: dict | None = None) -> tuple[int, str]:
    """``mupnc replay RUN OPTIONS --no-dashboard`` as a user runs it (its own CA set-up, none
    of the suite's EPICS variables; ``env`` added): (the replay's run number, its output)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    command = ["replay", str(run), *options, "--no-dashboard"]
    done = mupnc(*command, db=db, env={**own, **(env or {})}, timeout=180)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[1]), done.stdout


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(text=True)`` gives them."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def run_all(
    jobs: dict, cwd: Path, timeout: float = 120, parallel: int = 4
) -> dict[object, subprocess.CompletedProcess]:
    """``{key: (args, env)}`` -> ``{key: CompletedProcess}``: every ``mupnc ARGS`` (in ``cwd``,
    with ``env``, default this process's), ``parallel`` at a time, each forked from one
    interpreter.  A command still running after ``timeout`` s raises ``TimeoutExpired``."""
    keys = list(jobs)
    with tempfile.TemporaryDirectory(prefix="mupnc-cli-") as folder:
        specs = [
            {
                "args": [str(a) for a in args],
                "cwd": str(cwd),
                "env": dict(os.environ if env is None else env),
                "stdout": f"{folder}/{i}.out",
                "stderr": f"{folder}/{i}.err",
            }
            for i, (args, env) in enumerate(jobs[key] for key in keys)
        ]
        runner = subprocess.Popen(
            [sys.executable, str(FORKED), str(timeout), str(parallel)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its children with it, should it hang
        )
        try:
            out, err = runner.communicate(json.dumps(specs), timeout=timeout * len(keys) + 60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.communicate()
            raise
        if runner.returncode != 0:
            raise RuntimeError(f"the forked mupnc runner failed:\n{err}")
        results = {}
        for i, (key, status) in enumerate(zip(keys, json.loads(out), strict=True)):
            args = [MUPNC, *specs[i]["args"]]
            if status == "timeout":
                raise subprocess.TimeoutExpired(args, timeout)
            stdout, stderr = (Path(specs[i][name]).read_bytes() for name in ("stdout", "stderr"))
            results[key] = subprocess.CompletedProcess(args, status, _text(stdout), _text(stderr))
        return results


def in_process(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``mupnc ARGS`` run by :func:`mupnc.cli.main` in this process: (status, output, error)."""
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(result: subprocess.CompletedProcess, status: int) -> str:
    """The single stderr line of a run that failed with ``status`` (and no traceback)."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mupnc: error: "), lines[0]
    return lines[0]


def named_line(message: str) -> int | None:
    """The file line an error message names (``FILE, line N: ...``), if any."""
    found = re.search(r", line (\d+):", message)
    return None if found is None else int(found.group(1))
