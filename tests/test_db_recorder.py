"""The monitor's database writes: lossless recording, atomic flushes, resume after a crash,
buffering while the database is down.  Real SQLite and PostgreSQL, simulated window blocks
(the Channel Access path is covered by test_chain.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sqlalchemy import event, func, select

from db.models import (
    CUMULATIVE,
    AsymmetryResult,
    HelicityCounts,
    Minirun,
    MonitorCheckpoint,
    RecordedBlock,
    Run,
)
from db.recording import decode
from db.session import create_schema, make_engine, transaction
from db.store import allocate_run
from monitor.accumulator import RunAccumulator
from monitor.decoder import HelicityDecoder
from monitor.recorder import RunRecorder
from monitor.results import run_result
from mupnc.commands import run_config
from sim.source import SourceConfig, WindowSource

CONFIG = SourceConfig(muon_rate=1e8, seed=11, pattern="quartet", delay_patterns=2)
CHANNEL_MAP = CONFIG.resolved_channel_map()
WINDOWS_PER_BLOCK = 12
N_BLOCKS = 200
MINIRUN_PATTERNS = 60
FLUSH_EVERY = 10


@pytest.fixture(scope="module")
def simulated():
    """The blocks of a run and the helicity-gated scaler totals, shape (2, channels)."""
    source = WindowSource(CONFIG)
    blocks, scalers = [], np.zeros((2, len(CHANNEL_MAP.channels)), np.int64)
    for _ in range(N_BLOCKS):
        s = source.next_block_of(WINDOWS_PER_BLOCK)
        blocks.append(s.block)
        scalers[0] += s.block.counts[s.actual_helicity == 1].sum(axis=0)
        scalers[1] += s.block.counts[s.actual_helicity == -1].sum(axis=0)
    return blocks, scalers


class Monitor:
    """The monitor's write path without Channel Access (as in monitor/service.py)."""

    def __init__(self, engine, run: int, resume: bool = False) -> None:
        n_channels = len(CHANNEL_MAP.channels)
        self.decoder = HelicityDecoder(CONFIG.pattern, CONFIG.delay_patterns, n_channels)
        self.recorder = RunRecorder(engine, run)
        self.acc = self.recorder.resume(CHANNEL_MAP, self.decoder) if resume else None
        if self.acc is None:
            self.acc = RunAccumulator(CHANNEL_MAP, self.decoder.size, MINIRUN_PATTERNS)

    def ingest(self, blocks) -> None:
        self.recorder.add_blocks(blocks)
        for block in blocks:
            self.acc.add(self.decoder.feed(block))

    def flush(self, state: str = "running") -> bool:
        result = run_result(self.acc, CONFIG.polarization)
        lost = self.decoder.state.errors["missed_windows"]
        return self.recorder.flush(
            self.acc, self.decoder.state, result, CONFIG.polarization, lost, state
        )

    def run(self, blocks, flush: bool = True) -> None:
        for i in range(0, len(blocks), FLUSH_EVERY):
            self.ingest(blocks[i : i + FLUSH_EVERY])
            if flush:
                assert self.flush()

    def end(self) -> None:
        self.acc.add(self.decoder.flush())
        assert self.flush("ended")


def new_run(engine) -> int:
    with transaction(engine) as session:
        return allocate_run(session, source="sim", mode="alr", config=run_config(CONFIG))


def sorted_totals(engine, run: int) -> np.ndarray:
    """Database totals of helicity-sorted counts, shape (2, channels) in channel-map order."""
    with transaction(engine) as session:
        rows = session.execute(
            select(HelicityCounts.helicity, HelicityCounts.channel, func.sum(HelicityCounts.counts))
            .where(HelicityCounts.run == run, HelicityCounts.helicity != 0)
            .group_by(HelicityCounts.helicity, HelicityCounts.channel)
        ).all()
    table = {(h, c): int(n) for h, c, n in rows}
    return np.array([[table[h, name] for name in CHANNEL_MAP.names] for h in (1, -1)])


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
    with transaction(engine) as session:
        payloads = session.scalars(
            select(RecordedBlock.payload)
            .where(RecordedBlock.run == run)
            .order_by(RecordedBlock.block_number)
        ).all()
    assert len(payloads) == len(blocks)
    for payload, block in zip(payloads, blocks, strict=True):
        recorded = decode(payload)
        assert recorded.block_number == block.block_number
        np.testing.assert_array_equal(recorded.seq, block.seq)
        np.testing.assert_array_equal(recorded.counts, block.counts)
        assert recorded.beam_monitor.tobytes() == block.beam_monitor.tobytes()


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    create_schema(engine)
    yield engine
    engine.dispose()


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
def test_monitor_buffers_while_postgres_is_down(simulated, caplog):
    from db.pg_server import PostgresServer, ServerUnavailableError

    blocks, scalers = simulated
    try:
        server = PostgresServer()
    except ServerUnavailableError as err:
        pytest.skip(f"PostgreSQL tests need a server: {err}")
    try:
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
    finally:
        server.destroy()
