"""Parquet export/import of recordings and CSV export of results (no CA): the imported
run holds the very blocks exported and reports the same analysis; missing, corrupt,
truncated or foreign files are refused with one line and import nothing."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from support.cli import in_process as cli

from mupnc.cli import main
from mupnc.db.exchange import COUNTS_PREFIX, METADATA_KEY, WINDOW_COLUMNS
from mupnc.db.models import AsymmetryResult, Run
from mupnc.db.recording_reader import recorded_blocks
from mupnc.db.session import make_engine, transaction

NOT_ANALYSIS = {"run", "start", "end", "end_reason"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[str, int, object]:
    folder = tmp_path_factory.mktemp("exchange")
    db = f"sqlite:///{folder / 'x.db'}"
    sim = ["sim", "--seconds", "10", "--mode", "afb", "--rate", "1e9", "--minirun", "100"]
    assert main(["--db", db, *sim]) == 0
    assert main(["--db", db, "export", "1", str(folder / "run1.parquet")]) == 0
    return db, 1, folder / "run1.parquet"


def run_count(db: str) -> int:
    with transaction(make_engine(db)) as session:
        return session.scalar(select(func.count(Run.number)))


def test_the_parquet_file_follows_the_documented_schema(exported):
    _, run, path = exported
    table = pq.read_table(path)
    metadata = json.loads(table.schema.metadata[METADATA_KEY])
    names = metadata["channels"]
    assert names == ["forward", "backward"] or len(names) >= 2
    expected = [(n, t) for n, t in WINDOW_COLUMNS] + [
        (COUNTS_PREFIX + c, pa.int64()) for c in names
    ]
    assert [(f.name, f.type) for f in table.schema] == expected
    assert metadata["format"] == "mupnc-recording" and metadata["version"] == 1
    assert metadata["run"]["number"] == run and metadata["run"]["mode"] == "afb"
    assert table.num_rows == metadata["windows"] == 2400
    np.testing.assert_array_equal(table.column("seq").to_numpy(), np.arange(2400))


def test_import_gives_back_the_blocks_and_the_analysis(exported, capsys):
    db, run, path = exported
    code, out, _ = cli(capsys, "--db", db, "import", str(path))
    assert code == 0
    imported = int(out.split()[1].rstrip(":"))
    original = json.loads(cli(capsys, "--db", db, "report", str(run), "--json")[1])
    copy = json.loads(cli(capsys, "--db", db, "report", str(imported), "--json")[1])
    assert {k: v for k, v in copy.items() if k not in NOT_ANALYSIS} == {
        k: v for k, v in original.items() if k not in NOT_ANALYSIS
    }
    engine = make_engine(db)
    with transaction(engine) as session:
        provenance = session.get(Run, imported).provenance
    assert provenance["exported_run"] == run and provenance["imported_from"].endswith(path.name)
    pairs = zip(
        (b for batch in recorded_blocks(engine, run) for b in batch),
        (b for batch in recorded_blocks(engine, imported) for b in batch),
        strict=True,
    )
    for a, b in pairs:
        assert (a.stream_id, a.block_number) == (b.stream_id, b.block_number)
        for name in ("seq", "pattern_phase", "reported_helicity", "flags", "counts"):
            assert getattr(a, name).dtype == getattr(b, name).dtype
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a.beam_monitor.tobytes() == b.beam_monitor.tobytes()  # bit for bit
    engine.dispose()


def test_results_export_to_csv(exported, capsys, tmp_path):
    db, run, _ = exported
    path = tmp_path / "results.csv"
    assert cli(capsys, "--db", db, "export", str(run), str(path))[0] == 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    with transaction(make_engine(db)) as session:
        stored = session.scalars(
            select(AsymmetryResult)
            .where(AsymmetryResult.run == run)
            .order_by(AsymmetryResult.minirun, AsymmetryResult.id)
        ).all()
        expected = [
            (r.minirun, r.channel, r.value, r.error, r.n, r.chi2_ndf) for r in stored
        ]  # fmt: skip
    number = lambda text: None if text == "" else float(text)  # noqa: E731
    got = [
        (int(r["minirun"]), r["channel"], number(r["value"]), number(r["error"]), int(r["n"]),
         number(r["chi2_ndf"]))
        for r in rows
    ]  # fmt: skip
    assert got == expected and rows[0]["minirun"] == "-1" and rows[0]["run"] == str(run)
    assert {r["blinded"] for r in rows} == {"False"}


def rewrite(source, target, table=None, metadata=None) -> None:
    """A copy of ``source`` with another table and/or mupnc metadata."""
    table = pq.read_table(source) if table is None else table
    if metadata is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    pq.write_table(table, target)


def test_bad_files_are_refused_and_import_nothing(exported, capsys, tmp_path):
    db, _, path = exported
    data = path.read_bytes()
    metadata = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    table = pq.read_table(path)
    (tmp_path / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 40)
    corrupt = bytearray(data)
    corrupt[len(data) // 3 : len(data) // 3 + 64] = bytes(64)
    (tmp_path / "corrupt.parquet").write_bytes(bytes(corrupt))
    pq.write_table(pa.table({"seq": [1, 2, 3]}), tmp_path / "foreign.parquet")
    rewrite(path, tmp_path / "short.parquet", table.slice(0, 2000))
    rewrite(path, tmp_path / "shuffled.parquet", table.take(np.r_[12:24, 0:12, 24:2400]))
    rewrite(path, tmp_path / "version.parquet", metadata={**metadata, "version": 9})
    rewrite(path, tmp_path / "dropped.parquet", table.drop_columns(["flags"]))
    cases = {
        "missing.parquet": "no such file",
        "truncated.parquet": "not a readable Parquet file",
        "garbage.parquet": "not a readable Parquet file",
        "corrupt.parquet": "corrupt Parquet data",
        "foreign.parquet": "not a mupnc recording",
        "short.parquet": "truncated recording: 2000 windows in 167 blocks",
        "shuffled.parquet": "blocks out of order",
        "version.parquet": "version 9 is unknown",
        "dropped.parquet": "column 'flags' (uint8) missing or mistyped",
    }
    before = run_count(db)
    for name, message in cases.items():
        code, out, err = cli(capsys, "--db", db, "import", str(tmp_path / name))
        assert code == 2, (name, out, err)
        assert err.startswith("mupnc: error: ") and message in err, (name, err)
        assert len(err.strip().splitlines()) == 1, err
    assert run_count(db) == before
    code, _, err = cli(capsys, "--db", db, "export", "1", str(tmp_path / "x.root"))
    assert code == 2 and "FILE.parquet (recording) or FILE.csv (results)" in err
    assert cli(capsys, "--db", db, "export", "42", str(tmp_path / "x.parquet"))[0] == 1
    assert not (tmp_path / "x.parquet").exists()


def test_a_blinded_runs_export_carries_no_injected_or_expected_asymmetry(tmp_path):
    """The injected and expected asymmetries (and the channels' expected shape) give |A|
    away: an export of a blinded run leaves them out (they were in the file before)."""
    db = f"sqlite:///{tmp_path / 'b.db'}"
    assert main(["--db", db, "sim", "--seconds", "2", "--asymmetry", "0.02"]) == 0
    with transaction(make_engine(db)) as session:
        run = session.get(Run, 1)
        assert run.config["asymmetry"] == 0.02 and run.expected_asymmetry is not None
        run.blinded = True
    assert main(["--db", db, "export", "1", str(tmp_path / "b.parquet")]) == 0
    metadata = json.loads(pq.read_schema(tmp_path / "b.parquet").metadata[METADATA_KEY])
    exported = metadata["run"]
    assert exported["blinded"] and exported["expected_asymmetry"] is None
    assert not {"asymmetry", "expected_asymmetry", "expected_shape"} & set(exported["config"])
    assert exported["config"]["polarization"] == 0.9  # the rest of the configuration stays
