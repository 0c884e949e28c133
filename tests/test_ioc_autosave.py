"""The IOC's autosave: what a restarted IOC continues with, and the files it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.cli import mupnc, one_error_line, run_all, sqlite_with_schema

from mupnc.ioc.autosave import AutosaveError, RunSnapshot, load, settings_conflict
from mupnc.sim.source import SourceConfig, WindowSource


def snapshot(**kw) -> RunSnapshot:
    fields = dict(run=7, settings={"pattern": "quartet"}, first_seq=0, epoch=1000.0, next_seq=480)
    return RunSnapshot(**{**fields, **kw})


def test_a_restart_resumes_where_the_clock_is_on_a_pattern_start() -> None:
    # 10.01 s after seq 0 at 240 Hz the clock has reached window 2402.4 -> 2403 -> 2404.
    assert snapshot().resume_seq(1010.01, 240.0, 4) == 2404
    # never before the next unpublished window, even with the wall clock set back
    assert snapshot(next_seq=5000).resume_seq(1001.0, 240.0, 4) == 5000
    # a run whose clock never started continues where it is
    assert snapshot(epoch=math.nan, next_seq=0).resume_seq(5000.0, 240.0, 4) == 0


def test_save_and_load_round_trip_and_bad_files_name_themselves(tmp_path) -> None:
    path = tmp_path / "mupnc.ioc.autosave"
    assert load(path) is None
    saved = snapshot(scaler_plus=[1.0, 2.0], faults={"stuck_helicity": {"value": 1.0}})
    saved.save(path)
    assert load(path) == saved
    path.write_text('{"run": 7,\n "settings": {,\n}')
    with pytest.raises(AutosaveError, match=rf"{path}, line 2: not JSON"):
        load(path)
    path.write_text('{"run": 7}')
    with pytest.raises(AutosaveError, match=rf"{path}: not a mupnc IOC autosave"):
        load(path)


def test_settings_conflict_names_the_first_difference() -> None:
    assert settings_conflict({"a": 1, "b": 2}, {"a": 1, "b": 2}) is None
    assert settings_conflict({"a": 1, "b": 2}, {"a": 3, "b": 4}) == "a was 1, now 3 (and 1 more)"


@pytest.mark.parametrize("pattern", ["pair", "quartet", "octet"])
def test_a_skipped_source_has_the_uninterrupted_helicity(pattern: str) -> None:
    """The helicity generator runs on through the windows a restarted IOC never produces."""
    config = SourceConfig(pattern=pattern, seed=4)
    whole = WindowSource(config)
    reference = whole.next_block_of(40_000)
    resumed = WindowSource(config, incarnation=1)
    resumed.next_block_of(1000)
    resumed.skip_to(32_000)
    tail = resumed.next_block_of(8000)
    np.testing.assert_array_equal(tail.block.seq, reference.block.seq[32_000:])
    np.testing.assert_array_equal(tail.actual_helicity, reference.actual_helicity[32_000:])
    np.testing.assert_array_equal(
        tail.block.reported_helicity, reference.block.reported_helicity[32_000:]
    )
    # its own random numbers: not those the run's first incarnation drew
    first = WindowSource(config)
    first.next_block_of(1000)
    first.skip_to(32_000)
    assert not np.array_equal(tail.block.counts, first.next_block_of(8000).block.counts)
    with pytest.raises(ValueError, match="cannot skip back"):
        resumed.skip_to(100)


def test_the_ioc_command_refuses_unusable_autosave_files(tmp_path) -> None:
    """A corrupt file, an open run saved with other settings or an unwritable folder: one
    line naming the file, exit 2, and no run allocated for nothing."""
    db = sqlite_with_schema(tmp_path / "runs.db")
    corrupt = tmp_path / "corrupt.autosave"
    corrupt.write_text('{"run": 1,\n oops}')
    other = tmp_path / "other.autosave"
    snapshot(run=1, settings={"pattern": "octet"}).save(other)
    cases = {
        "corrupt": ([str(corrupt)], f"autosave file {corrupt}, line 2: not JSON"),
        "other settings": ([str(other)], f"autosave file {other} holds open run 1 with other"),
        "no folder": ([str(tmp_path / "missing" / "f")], "cannot write in"),
    }
    results = run_all(
        {k: (["--db", db, "ioc", "--autosave", *a], None) for k, (a, _) in cases.items()},
        tmp_path,
    )
    for key, (_, expected) in cases.items():
        assert expected in one_error_line(results[key], 2), key
    assert "[]" in mupnc("runs", "--json", db=db, cwd=tmp_path, timeout=120).stdout
