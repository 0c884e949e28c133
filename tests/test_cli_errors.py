"""Bad command-line values, subcommand by subcommand, through the real ``mupnc`` console
script: one line on stderr (``mupnc: error: ...``), no traceback, exit status 2 for bad
input and 1 for a run-time failure (an unknown run, a database that cannot be reached)."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from support.cli import mupnc, one_error_line, run_all, sqlite_with_schema

# (arguments, exit status, words the one line must hold); every run gets --db of a database
# with the schema; {dir} is a folder, {junk} a file of random bytes
CASES = [
    (["demo", "--duration", "-5"], 2, "--duration: must be a positive number"),
    (["demo", "--duration", "nan"], 2, "--duration: must be a positive number"),
    (["demo", "--duration", "soon"], 2, "--duration: invalid value: 'soon'"),
    (["demo", "--asymmetry", "2"], 2, "--asymmetry: must be a fraction"),
    (["demo", "--rate", "1e20"], 2, "muon_rate must lie in"),
    (["demo", "--rate", "-5"], 2, "--rate: must be a positive number, got '-5'"),
    (["demo", "--window-rate", "1e9"], 2, "window_rate must lie in"),
    (["demo", "--pattern", "sextet"], 2, "--pattern: invalid choice"),
    (["demo", "--mode", "abc"], 2, "--mode: invalid choice"),
    (["demo", "--polarization", "1.5"], 2, "--polarization: must be a fraction in (0, 1]"),
    (["demo", "--polarization", "0"], 2, "--polarization: must be a fraction in (0, 1]"),
    (["demo", "--scheme", "wobble"], 2, "--scheme: invalid choice"),
    (["demo", "--preset", "bsm"], 2, "--preset: invalid choice"),
    (["demo", "--momentum", "5"], 2, "momentum must lie in [10, 500] MeV/c"),
    (["sim", "--windows", "10", "--config", "{dir}"], 2, "cannot read the run configuration"),
    (["demo", "--seed", "-1"], 2, "--seed: a seed must be an integer >= 0"),
    (["demo", "--port", "70000"], 2, "--port: a TCP port must lie in 1..65535"),
    (["demo", "--ca-port", "80"], 2, "--ca-port: must lie in 1024..65534 (the IOC serves on"),
    (["demo", "--ca-port", "65535"], 2, "--ca-port: must lie in 1024..65534"),
    (["demo", "--ca-port", "many"], 2, "--ca-port: invalid value: 'many'"),
    (["demo", "--pva-port", "80"], 2, "--pva-port: must lie in 1024..65535"),
    (["demo", "--inject", "meteor_strike"], 2, "--inject: unknown fault 'meteor_strike'"),
    (["demo", "--inject", "stuck_helicity@-1"], 2, "--inject: time must be seconds >= 0"),
    (["demo", "--inject", "stuck_helicity@soon"], 2, "--inject: invalid value"),
    (
        ["demo", "--inject", "stuck_helicity@100", "--duration", "5"],
        2,
        "--inject stuck_helicity@100: after the run's end (--duration 5 s)",
    ),
    (["sim", "--windows", "0"], 2, "--windows: must be a positive integer"),
    (["sim", "--seconds", "-1"], 2, "--seconds: must be a positive number"),
    (["sim"], 2, "one of the arguments --windows --seconds is required"),
    (["sim", "--windows", "9", "--block-rate", "1e-9"], 2, "--block-rate: must lie in 1..1000"),
    (["sim", "--windows", "9", "--minirun", "1"], 2, "--minirun: a minirun needs at least 2"),
    (["ioc", "--list-pvs", "--block-rate", "0"], 2, "--block-rate: must lie in 1..1000"),
    (["ioc", "--source", "replay:last"], 2, "--source: must be 'sim' or 'replay:RUN'"),
    (["ioc", "--group", "magnets"], 2, "--group: invalid choice"),
    (["ioc", "--blind", "1.5"], 2, "--blind: blinding box must be a fraction"),
    (["replay", "1", "--speed", "0"], 2, "--speed: must be a positive number"),
    (["replay", "1", "--speed", "-2"], 2, "--speed: must be a positive number"),
    (["replay", "1", "--speed", "inf"], 2, "--speed: must be a positive number"),
    (["replay", "1", "--speed", "fast"], 2, "--speed: invalid value: 'fast'"),
    (["replay", "1", "--from", "-3"], 2, "--from: must be seconds >= 0"),
    (["replay", "one"], 2, "argument run: invalid int value"),
    (["replay", "42", "--no-dashboard"], 1, "run 42 is not in the database"),
    (["reanalyze", "42"], 1, "run 42 is not in the database"),
    (["reanalyze", "1", "--minirun", "1"], 2, "--minirun: a minirun needs at least 2"),
    (["reanalyze", "1", "--min-beam-rate", "-5"], 2, "--min-beam-rate: must be a positive"),
    (["reanalyze", "1", "--min-beam-rate", "nan"], 2, "--min-beam-rate: must be a positive"),
    (["report", "not-a-number"], 2, "argument run: invalid int value"),
    (["report", "42"], 1, "run 42 is not in the database"),
    (["report", "-5"], 1, "run -5 is not in the database"),
    (["export", "42", "out.csv"], 1, "run 42 is not in the database"),
    (["export", "1", "out.txt"], 2, "export writes FILE.parquet (recording) or FILE.csv"),
    (["import", "missing.parquet"], 2, "missing.parquet: no such file"),
    (["import", "{dir}"], 2, "no such file"),
    (["import", "{junk}"], 2, "not a readable Parquet file"),
    (["monitor", "--minirun", "0"], 2, "--minirun: a minirun needs at least 2"),
    (["monitor", "--alarm-rules", "missing.toml"], 2, "cannot read the alarm rules"),
    (["dashboard", "--port", "0"], 2, "--port: a TCP port must lie in 1..65535"),
    (["dashboard", "--address", "999.1.1.1"], 2, "--address: cannot resolve address"),
    (["alarms", "ack"], 2, "alarms ack needs the id of an alarm"),
    (["alarms", "shelve", "1"], 2, "alarms shelve takes one id and --for SECONDS"),
    (["alarms", "shelve", "1", "--for", "-5"], 2, "--for: must be a positive number"),
    (["alarms", "--for", "5"], 2, "--for goes with alarms shelve"),
    (["alarms", "ack", "99999"], 1, "no alarm with id 99999"),
    (["plan"], 2, "the following arguments are required: --mode"),
    (["plan", "--mode", "afb", "--z", "0"], 2, "z must be an integer in [1, 120]"),
    (["plan", "--mode", "alr", "--z", "36"], 2, "z (nuclear charge) applies to mode afb only"),
    (["plan", "--mode", "afb", "--asymmetry", "0"], 2, "asymmetry must be a non-zero fraction"),
    (["plan", "--mode", "alr", "--efficiency", "5"], 2, "efficiency must lie in (0, 1]"),
    (["plan", "--mode", "alr", "--flux", "-1"], 2, "--flux: must be a positive number"),
    (["db", "downgrade"], 2, "argument action: invalid choice"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ([], 2, "the following arguments are required: COMMAND"),
]

# bad --db URLs (the password must never be echoed)
BAD_URLS = [
    ("nonsense", 2, "--db: not a database URL: 'nonsense'"),
    ("mysql://shift:s3cret@localhost/db", 2, "--db: unsupported database 'mysql'"),
    ("postgresql://shift:s3cret@127.0.0.1:port/db", 2, "--db: not a database URL"),
    ("sqlite:////nonexistent/folder/x.db", 1, "no database at /nonexistent/folder/x.db"),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """Every case run once."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "junk.parquet").write_bytes(os.urandom(3000))
    (folder / "a-folder").mkdir()
    db = sqlite_with_schema(folder / "cli.db")
    substitutions = {"{dir}": str(folder / "a-folder"), "{junk}": str(folder / "junk.parquet")}
    jobs = {
        ("case", i): (["--db", db, *[substitutions.get(a, a) for a in args]], None)
        for i, (args, _, _) in enumerate(CASES)
    }
    for i, (url, _, _) in enumerate(BAD_URLS):
        jobs["--db", i] = (["--db", url, "runs"], None)
        jobs["MUPNC_DB", i] = (["runs"], {**os.environ, "MUPNC_DB": url})
    return run_all(jobs, folder)


def check(result: subprocess.CompletedProcess, status: int, words: str) -> None:
    assert words in one_error_line(result, status)


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [(i, status, words) for i, (_, status, words) in enumerate(CASES)],
    ids=[" ".join(c[0]) or "(none)" for c in CASES],
)
def test_bad_value_gives_one_line_and_its_exit_status(results, case, status, words):
    check(results["case", case], status, words)


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [(i, status, words) for i, (_, status, words) in enumerate(BAD_URLS)],
    ids=[u[0] for u in BAD_URLS],
)
@pytest.mark.parametrize("given_by", ["--db", "MUPNC_DB"])
def test_bad_database_url_gives_one_line_without_the_password(
    results, given_by, case, status, words
):
    result = results[given_by, case]
    check(result, status, words)
    assert "s3cret" not in result.stderr + result.stdout


def test_a_dashboard_port_in_use_is_refused_in_one_line(tmp_path) -> None:
    """Not a traceback after printing an address another server answers on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = mupnc("dashboard", "--port", str(port), db=sqlite_with_schema(tmp_path / "d.db"))
    assert one_error_line(result, 2).endswith(
        f"--port {port}: in use on 127.0.0.1 (another dashboard?)"
    )
    assert "http://" not in result.stdout


def test_a_locked_database_gives_one_line(tmp_path, capsys, monkeypatch) -> None:
    """SQLite's "database is locked" (another writer held the file for 30 s) or a server
    gone mid-command: one line naming the database, exit status 1, no traceback."""
    import sqlite3

    from sqlalchemy.exc import OperationalError
    from support.cli import in_process

    from mupnc import commands

    def locked(*_args, **_kwargs):
        raise OperationalError(
            "INSERT INTO runs", {}, sqlite3.OperationalError("database is locked")
        )

    monkeypatch.setattr(commands, "list_runs", locked)
    url = sqlite_with_schema(tmp_path / "locked.db")
    code, out, err = in_process(capsys, "--db", url, "runs")
    assert code == 1 and out == ""
    assert err == f"mupnc: error: database {url}: database is locked\n"
