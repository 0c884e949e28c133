"""Reading a run's recording back: its blocks in order, whole, checked
(:mod:`mupnc.db.block_codec`).

A recording is the :class:`mupnc.db.models.RecordedBlock` rows of one run: one window stream, or
several if the IOC was restarted during the run (each stream numbers its blocks from 0;
sequence numbers grow across them).  :func:`recorded_blocks` yields them decoded, in
window order, a batch per short
transaction (so any thread may drive the iterator), optionally only the blocks that lie
wholly inside a range of sequence numbers.  Every payload is checked against its row: a
corrupt or inconsistent recording raises :class:`RecordingError` naming the run and block.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from mupnc.daq.blocks import WindowBlock
from mupnc.db.block_codec import RecordingError, decode
from mupnc.db.models import MonitorCheckpoint, RecordedBlock, Run
from mupnc.db.session import transaction

BATCH_BLOCKS = 256
"""Blocks read per transaction."""


@dataclass(frozen=True)
class SeqRange:
    """Windows ``start <= seq < stop`` (``stop`` None: to the end)."""

    start: int = 0
    stop: int | None = None

    def where(self):
        clauses = [RecordedBlock.first_seq >= self.start]
        if self.stop is not None:
            clauses.append(RecordedBlock.last_seq < self.stop)
        return clauses


WHOLE_RUN = SeqRange()


@dataclass(frozen=True)
class RecordingInfo:
    """What a run's recording (or the range of it) holds."""

    run: Run
    stream_id: int
    """The first window stream (a run recorded across an IOC restart has several)."""
    blocks: int
    windows: int
    first_seq: int
    last_seq: int
    max_block_windows: int
    minirun_patterns: int | None
    """Minirun length the run's monitor used (from its checkpoint), if known."""


def recording_info(session: Session, number: int, seq: SeqRange = WHOLE_RUN) -> RecordingInfo:
    """The run and its recording; ``LookupError`` for an unknown run or an empty recording
    (or range)."""
    run = session.get(Run, number)
    if run is None:
        raise LookupError(f"run {number} is not in the database")
    first_stream = session.scalars(
        select(RecordedBlock.stream_id)
        .where(RecordedBlock.run == number)
        .order_by(RecordedBlock.first_seq)
        .limit(1)
    ).first()
    blocks, windows, first, last, widest = session.execute(
        select(
            func.count(RecordedBlock.id),
            func.coalesce(func.sum(RecordedBlock.n_windows), 0),
            func.min(RecordedBlock.first_seq),
            func.max(RecordedBlock.last_seq),
            func.max(RecordedBlock.n_windows),
        ).where(RecordedBlock.run == number, *seq.where())
    ).one()
    if not blocks:
        where = "" if seq == WHOLE_RUN else " in the range asked for"
        raise LookupError(f"run {number} has no recorded windows{where}")
    checkpoint = session.get(MonitorCheckpoint, number)
    minirun = checkpoint.accumulator.get("minirun_patterns") if checkpoint else None
    return RecordingInfo(
        run=run,
        stream_id=first_stream,
        blocks=int(blocks),
        windows=int(windows),
        first_seq=int(first),
        last_seq=int(last),
        max_block_windows=int(widest),
        minirun_patterns=None if minirun is None else int(minirun),
    )


def recorded_blocks(
    engine: Engine, number: int, seq: SeqRange = WHOLE_RUN, batch: int = BATCH_BLOCKS
) -> Iterator[list[WindowBlock]]:
    """The run's recorded blocks (in ``seq``) in window order, ``batch`` at a time."""
    after = -1  # last window of the previous batch
    while True:
        with transaction(engine) as session:
            rows = session.execute(
                select(
                    RecordedBlock.block_number,
                    RecordedBlock.stream_id,
                    RecordedBlock.n_windows,
                    RecordedBlock.n_channels,
                    RecordedBlock.payload,
                    RecordedBlock.last_seq,
                )
                .where(RecordedBlock.run == number, RecordedBlock.first_seq > after, *seq.where())
                .order_by(RecordedBlock.first_seq)
                .limit(batch)
            ).all()
        if not rows:
            return
        yield [_checked(number, *row[:5]) for row in rows]
        after = rows[-1].last_seq


def _checked(
    run: int, block_number: int, stream_id: int, n_windows: int, n_channels: int, payload: bytes
) -> WindowBlock:
    try:
        block = decode(payload)
    except (ValueError, TypeError, struct.error) as err:  # RecordingError is a ValueError
        raise RecordingError(f"run {run}, recorded block {block_number}: {err}") from None
    header = (block.block_number, block.stream_id, block.n_windows, block.n_channels)
    if header != (block_number, stream_id, n_windows, n_channels):
        raise RecordingError(f"run {run}, recorded block {block_number}: payload does not match")
    return block
