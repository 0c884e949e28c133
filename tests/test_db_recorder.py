"""The monitor's database writes: lossless recording, atomic flushes, resume after a crash,
buffering while the database is down.  Real SQLite and PostgreSQL, simulated window blocks
(the Channel Access path is covered by test_chain.py)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from db_writes import (
    FLUSH_EVERY,
    N_BLOCKS,
    WINDOWS_PER_BLOCK,
    Monitor,
    new_run,
    recorded,
    simulate,
    sorted_totals,
)
from sqlalchemy import event, func, select

from mupnc.db.models import (
    CUMULATIVE,
    AsymmetryResult,
    Minirun,
    MonitorCheckpoint,
    RecordedBlock,
    Run,
)
from mupnc.db.session import create_schema, make_engine, transaction


@pytest.fixture(scope="module")
def simulated():
    return simulate()


def cumulative(engine, run: int) -> dict[str, AsymmetryResult]:
    with transaction(engine) as session:
        rows = session.scalars(
            select(AsymmetryResult).where(
                AsymmetryResult.run == run, AsymmetryResult.minirun == CUMULATIVE
            )
        ).all()
        session.expunge_all()
    return {r.channel: r for r in rows}


def assert_recording_is_the_stream(engine, run: int, blocks) -> None:
    rows = recorded(engine, run, order=RecordedBlock.block_number)
    assert len(rows) == len(blocks)
    for (_, recorded_block), block in zip(rows, blocks, strict=True):
        assert recorded_block.block_number == block.block_number
        np.testing.assert_array_equal(recorded_block.seq, block.seq)
        np.testing.assert_array_equal(recorded_block.counts, block.counts)
        assert recorded_block.beam_monitor.tobytes() == block.beam_monitor.tobytes()


def test_a_restarted_monitor_resumes_without_double_counting(engine, simulated):
    blocks, scalers = simulated
    reference_run, run = new_run(engine), new_run(engine)
    reference = Monitor(engine, reference_run)
    reference.run(blocks)
    reference.end()

    first = Monitor(engine, run)
    first.run(blocks[:120])
    first.ingest(blocks[120:135])  # ingested, never flushed: lost with the crash
    del first
    with transaction(engine) as session:
        held = session.get(MonitorCheckpoint, run).decoder
    assert held["windows_seen"] > held["windows_released"]  # the decoder was holding windows

    second = Monitor(engine, run, resume=True)
    assert second.recorder.next_block == 120
    second.run(blocks[second.recorder.next_block :])
    second.end()

    np.testing.assert_array_equal(sorted_totals(engine, run), scalers)
    np.testing.assert_array_equal(sorted_totals(engine, reference_run), scalers)
    with transaction(engine) as session:
        r = session.get(Run, run)
        assert (r.state, r.windows, r.lost_windows) == ("ended", N_BLOCKS * WINDOWS_PER_BLOCK, 0)
        patterns = {
            n: session.scalars(
                select(Minirun.patterns_good).where(Minirun.run == n).order_by(Minirun.index)
            ).all()
            for n in (run, reference_run)
        }
    assert patterns[run] == patterns[reference_run]
    assert sum(patterns[run]) == N_BLOCKS * WINDOWS_PER_BLOCK // 4
    resumed, uninterrupted = cumulative(engine, run), cumulative(engine, reference_run)
    assert resumed.keys() == uninterrupted.keys()
    for channel, r in uninterrupted.items():
        assert resumed[channel].n == r.n
        assert resumed[channel].value == pytest.approx(r.value, rel=1e-9), channel
        assert resumed[channel].error == pytest.approx(r.error, rel=1e-9), channel
    assert_recording_is_the_stream(engine, run, blocks)


def test_a_failed_flush_writes_nothing_and_the_next_one_everything(engine, simulated):
    blocks, scalers = simulated
    run = new_run(engine)
    monitor = Monitor(engine, run)
    monitor.run(blocks[:50])
    before = sorted_totals(engine, run)

    def crash_midway(conn, cursor, statement, *args) -> None:
        if "asymmetry_results" in statement:  # after recording, miniruns and counts
            raise RuntimeError("crash in the middle of a flush")

    event.listen(engine, "before_cursor_execute", crash_midway)
    monitor.ingest(blocks[50:100])
    with pytest.raises(RuntimeError, match="crash in the middle"):
        monitor.flush()
    event.remove(engine, "before_cursor_execute", crash_midway)

    np.testing.assert_array_equal(sorted_totals(engine, run), before)
    with transaction(engine) as session:
        recorded = session.scalar(select(func.count()).where(RecordedBlock.run == run))
        assert recorded == 50
        assert session.get(Run, run).windows < 50 * WINDOWS_PER_BLOCK
    monitor.run(blocks[100:])
    monitor.end()
    np.testing.assert_array_equal(sorted_totals(engine, run), scalers)
    assert_recording_is_the_stream(engine, run, blocks)


@pytest.mark.postgres
def test_monitor_buffers_while_postgres_is_down(own_pg_server, simulated, caplog):
    server = own_pg_server
    blocks, scalers = simulated
    server.start()
    engine = make_engine(server.create_database("outage"))
    create_schema(engine)
    run = new_run(engine)
    monitor = Monitor(engine, run)
    monitor.run(blocks[:60])

    server.stop()
    caplog.set_level(logging.WARNING, logger="mupnc.monitor.recorder")
    for i in range(60, 120, FLUSH_EVERY):
        monitor.ingest(blocks[i : i + FLUSH_EVERY])
        assert not monitor.flush()
    assert monitor.recorder.buffered_blocks == 60
    assert "buffering 10 blocks in memory, retrying" in caplog.text
    assert "cannot reach database postgresql+psycopg://mupnc@127.0.0.1" in caplog.text

    server.start()
    monitor.run(blocks[120:])
    assert "database reachable again after 6 failed flushes" in caplog.text
    monitor.end()
    np.testing.assert_array_equal(sorted_totals(engine, run), scalers)
    assert_recording_is_the_stream(engine, run, blocks)
    engine.dispose()


def test_a_forked_child_still_encodes_blocks_for_its_recording() -> None:
    """The recording's encoder thread does not survive a fork (the suite forks CLI
    commands): a child gets its own, or its first flush would wait forever."""
    from mupnc.monitor import recorder

    assert recorder._ENCODER.submit(int, "1").result(timeout=10) == 1  # the parent's thread
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        try:
            encoded = recorder._ENCODER.submit(int, "7").result(timeout=10)
            os._exit(0 if encoded == 7 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
