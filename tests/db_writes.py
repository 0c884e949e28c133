"""The monitor's database write path without Channel Access (as in monitor/service.py),
over simulated window blocks: shared by the database tests."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from mupnc.daq.blocks import WindowBlock
from mupnc.db.block_codec import decode
from mupnc.db.models import RecordedBlock
from mupnc.db.session import transaction
from mupnc.db.store import allocate_run
from mupnc.db.summary import helicity_totals
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.results import run_result
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.recorder import RunRecorder
from mupnc.runs import run_config
from mupnc.sim.source import SourceConfig, WindowSource

CONFIG = SourceConfig(muon_rate=1e8, seed=11, pattern="quartet", delay_patterns=2)
CHANNEL_MAP = CONFIG.resolved_channel_map()
DETECTORS = CHANNEL_MAP.detector_columns
"""Columns of the detector channels (the map's beam position monitors have no scalers)."""
WINDOWS_PER_BLOCK = 12
N_BLOCKS = 200
MINIRUN_PATTERNS = 60
FLUSH_EVERY = 10


def simulate() -> tuple[list[WindowBlock], np.ndarray]:
    """The blocks of a run and the helicity-gated scaler totals, shape (2, detectors)."""
    source = WindowSource(CONFIG)
    blocks, scalers = [], np.zeros((2, len(DETECTORS)), np.int64)
    for _ in range(N_BLOCKS):
        s = source.next_block_of(WINDOWS_PER_BLOCK)
        blocks.append(s.block)
        counts = s.block.counts[:, DETECTORS]
        scalers[0] += counts[s.actual_helicity == 1].sum(axis=0)
        scalers[1] += counts[s.actual_helicity == -1].sum(axis=0)
    return blocks, scalers


class Monitor:
    """One monitor's decoder, accumulator and recorder for one run."""

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
        return self.recorder.flush(self.acc, self.decoder.state, result, lost, state)

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


def sorted_totals(engine, run: int, names: list[str] | None = None) -> np.ndarray:
    """Database totals of helicity-sorted counts, shape (2, channels), in the order of
    ``names`` (default: the channel map of :data:`CONFIG`)."""
    with transaction(engine) as session:
        return np.array(
            helicity_totals(session, run, CHANNEL_MAP.detectors().names if names is None else names)
        )


def recorded(engine, run: int, order=RecordedBlock.first_seq) -> list[tuple[int, WindowBlock]]:
    """The run's recorded blocks, decoded, in ``order``, each with the stream it came in."""
    with transaction(engine) as session:
        rows = session.execute(
            select(RecordedBlock.stream_id, RecordedBlock.payload)
            .where(RecordedBlock.run == run)
            .order_by(order)
        ).all()
    return [(stream, decode(payload)) for stream, payload in rows]
