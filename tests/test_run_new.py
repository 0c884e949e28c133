"""``mupnc run new``: registering a run for an outside DAQ IOC (docs/daq-contract.md, §7)."""

from __future__ import annotations

from support.cli import in_process, mupnc, one_error_line, sqlite_with_schema

from mupnc.db.models import Run
from mupnc.db.session import make_engine, transaction

MAP = """mode = "afb"
[[channels]]
name = "fwd"
role = "forward"
acceptance = 1e-3
[[channels]]
name = "bwd"
role = "backward"
acceptance = 1e-3
"""


def test_run_new_prints_the_number_alone_and_registers_a_live_run(tmp_path, capsys) -> None:
    db = sqlite_with_schema(tmp_path / "runs.db")
    assert in_process(capsys, "--db", db, "run", "new") == (0, "1\n", "")
    (tmp_path / "map.toml").write_text(MAP)
    status, out, err = in_process(
        capsys,
        "run",
        "new",
        "--mode",
        "afb",
        "--channel-map",
        str(tmp_path / "map.toml"),
        "--db",
        db,
    )
    assert (status, out, err) == (0, "2\n", "")
    engine = make_engine(db)
    with transaction(engine) as session:
        run = session.get(Run, 2)
        assert (run.state, run.source, run.mode) == ("starting", "live", "afb")
        assert run.expected_asymmetry is None and run.config["daq"] == "outside"
        assert [c["name"] for c in run.channel_map["channels"]] == ["fwd", "bwd"]
    engine.dispose()


def test_run_new_takes_a_run_file(tmp_path, capsys) -> None:
    db = sqlite_with_schema(tmp_path / "runs.db")
    (tmp_path / "run.toml").write_text('mode = "afb"\n')
    assert in_process(capsys, "--db", db, "run", "new", "--config", str(tmp_path / "run.toml"))[
        :2
    ] == (
        0,
        "1\n",
    )
    engine = make_engine(db)
    with transaction(engine) as session:
        assert session.get(Run, 1).mode == "afb"
    engine.dispose()


def test_run_new_refuses_in_one_line(tmp_path) -> None:
    missing = one_error_line(mupnc("run", "new", db=f"sqlite:///{tmp_path / 'none.db'}"), 1)
    assert "no database at" in missing
    db = sqlite_with_schema(tmp_path / "runs.db")
    (tmp_path / "bad.toml").write_text("mode = 'xyz'\n")
    bad = one_error_line(mupnc("run", "new", "--config", str(tmp_path / "bad.toml"), db=db), 2)
    assert "bad.toml" in bad and "mode" in bad
