"""Replay of a recorded run through the IOCs (``mupnc ioc --source replay:RUN``).

The IOC serves the same PVs as live, with the recorded run's settings (pattern, delay,
polarization, scheme, channel map, blinding flag and box, muon rate, ...), and publishes
exactly the recorded windows, with their sequence numbers (block numbers count from 0 in
the order replayed; a range replay starts at block 0).

Blocks: the monitor's analysis does not depend on how windows are cut into blocks
(:mod:`mupnc.monitor.analysis.accumulator`), so a fast replay *coalesces* consecutive recorded
blocks of one stream into bigger published blocks (the monitor's cost is mostly per block): a
published block grows until it spans ``speed / PUBLISH_RATE`` seconds of data (at most
:data:`PUBLISH_RATE` blocks per second at any speed; at speed 1 the recorded 20 Hz blocks
go out as recorded) or would exceed :attr:`RecordedSource.capacity` windows (about
:data:`COALESCE_SECONDS` of data, at most :data:`PUBLISH_BYTES` on the wire; at speed max
every block is that big).  The DAQ's array PVs are sized for that capacity.

Pace: block *k* goes out when the data time of its last window, ``(seq + 1 - first) /
window_rate``, divided by ``speed`` has passed (``speed`` 1 = real time); ``speed`` None
("max") drops that pace.  Every writer stays rate-limited: at most :data:`MAX_BLOCK_RATE`
blocks per second.

Flow control: the consumer (the monitor, :mod:`mupnc.monitor.flow`) writes ``DAQ:CONSUMED``, the
last block it took.  The replay publishes block 0 at once (so a new subscriber's first
value is a block), continues once it reads -1 or more (the consumer is ready), and
publishes block *k* only once the consumer has taken block *k - (ring depth - 1)*: the
ring then still holds every block the consumer has not taken, so at any speed no block of
a replay is lost (a dropped update is refilled from the ring).  The replay clock stands
still while it waits.

Scalers: a replay has no truth helicity.  ``DAQ:SCALER:PLUS/MINUS`` are gated by the
helicity the IOC decodes from the recorded windows itself (the monitor's decoder), updated
once per batch of :data:`mupnc.db.recording_reader.BATCH_BLOCKS` blocks and at the end; so they
lag the stream, and at the end equal the helicity-sorted totals of a clean run.  Writes of the beam
setpoints or fault switches are refused: a recording cannot be changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import Engine

from mupnc.daq.blocks import WindowBlock, wire_length
from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.helicity import pattern_shape
from mupnc.daq.scheme import stored_rotator
from mupnc.db.recording_reader import WHOLE_RUN, SeqRange, recorded_blocks, recording_info
from mupnc.db.session import transaction
from mupnc.monitor.decoding import make_decoder
from mupnc.sim.source import SourceConfig

log = logging.getLogger("mupnc.replay_source")

MAX_BLOCK_RATE = 1000.0
"""Blocks per second a replay publishes at most (the writer's rate limit, any speed)."""
PUBLISH_RATE = 50.0
"""Blocks per second a paced replay aims at most: it coalesces recorded blocks to stay below."""
COALESCE_SECONDS = 1.0
"""Seconds of data a published block holds at most (speed max: every block)."""
PUBLISH_BYTES = 1 << 21
"""Wire bytes a coalesced block may take at most, its counts at 8 bytes (bounds the ring
buffer's memory)."""
CONSUMER_POLL = 0.002
"""Seconds between two looks at DAQ:CONSUMED while the replay waits for its consumer."""
CONFIG_KEYS = {
    "mode": "mode",
    "polarization": "polarization",
    "muon_rate": "muon_rate",
    "momentum": "momentum",
    "window_rate": "window_rate",
    "pattern": "pattern",
    "delay_patterns": "delay_patterns",
    "scheme": "scheme",
    "flip_period": "flip_period",
    "settle_time": "settle_time",
    "kick_turns": "kick_turns",
    "kick_precession": "kick_precession",
    "rotator_pattern": "rotator_pattern",
}
"""Run configuration keys (:func:`mupnc.runs.run_config`) -> :class:`SourceConfig` fields."""


def recorded_config(config: dict, channel_map: dict) -> SourceConfig:
    """The recorded run's settings as a :class:`SourceConfig` (what the IOC groups publish)."""
    fields = {field: config[key] for key, field in CONFIG_KEYS.items() if key in config}
    rotator = stored_rotator(config)  # a run recorded before rotator settings: theirs then
    fields.update(rotator_pattern=rotator.pattern, kick_precession=rotator.degrees_per_turn)
    if "kick_turns" in fields:
        fields["kick_turns"] = tuple(fields["kick_turns"])
    return SourceConfig(**fields, channel_map=ChannelMap.from_json(json.dumps(channel_map)))


class RecordedSource:
    """A recorded run in the place of :class:`mupnc.sim.source.WindowSource` for
    :func:`mupnc.ioc.server.build_ioc`: its settings, and its blocks in order."""

    def __init__(self, engine: Engine, run: int, seq: SeqRange = WHOLE_RUN) -> None:
        with transaction(engine) as session:
            info = recording_info(session, run, seq)
            row = info.run
            config = dict(row.config or {})
            channel_map = row.channel_map or config["channel_map"]
            self.blinded, self.blind_box = bool(row.blinded), config.get("blind_box")
        self.engine, self.run, self.seq = engine, run, seq
        self.config = recorded_config(config, channel_map)
        self.channel_map = self.config.resolved_channel_map()
        self.shape = pattern_shape(self.config.pattern)
        self.stream_id = info.stream_id
        self.first_seq = self.next_seq = info.first_seq
        self.next_block = 0
        self.blocks, self.windows = info.blocks, info.windows
        window_rate = self.config.window_rate
        wire_windows = PUBLISH_BYTES // (4 * wire_length(1, self.n_channels))
        self.capacity = max(
            info.max_block_windows, min(math.ceil(COALESCE_SECONDS * window_rate), wire_windows)
        )
        """Windows a published (coalesced) block holds at most."""
        self.block_rate = window_rate / math.ceil(self.capacity / 2)
        """Nominal block rate (Hz) of the DAQ layout: its array PVs hold ``capacity`` windows
        (:class:`mupnc.ioc.server.DaqLayout` sizes them for twice the nominal block)."""
        self._decoder = make_decoder(
            self.config.scheme,
            self.config.pattern,
            self.config.delay_patterns,
            self.n_channels,
            self.config.rotator,
            window_rate=self.config.window_rate,
        )
        self._decoder.state.last_seq = self.first_seq - 1

    @property
    def n_channels(self) -> int:
        return len(self.channel_map.channels)

    def batches(self):
        """Batches of recorded blocks with the scaler counts (per detector, decoded helicity
        +1/-1) to add once the batch's last window is out: ``(blocks, (plus, minus))``."""
        for batch in recorded_blocks(self.engine, self.run, self.seq):
            released = self._decoder.feed(WindowBlock.concatenate(batch))
            yield batch, _gated(released, self.channel_map.detector_columns)

    def final_scalers(self) -> tuple[np.ndarray, np.ndarray]:
        """Scaler counts of the windows the decoder held until the end."""
        return _gated(self._decoder.flush(), self.channel_map.detector_columns)

    # Setpoints and fault switches: a recording cannot be changed.

    def set_muon_rate(self, rate: float) -> None:
        if rate != self.config.muon_rate:
            raise ValueError("a replay serves the recorded muon rate; it cannot be changed")

    def set_beam_on(self, on: bool) -> None:
        if not on:
            raise ValueError("a replay cannot switch the recorded beam off")

    def set_fault(self, kind: str, on: bool, **params: float) -> None:
        if on:
            raise ValueError(f"a replay cannot inject the fault {kind}: the recording is fixed")


def coalesced(blocks: list[WindowBlock], capacity: int, span: float) -> list[list[WindowBlock]]:
    """Consecutive ``blocks`` grouped for publishing: a group takes the next block of its
    stream while it spans fewer than ``span`` windows (sequence numbers) and stays within
    ``capacity`` windows."""
    groups: list[list[WindowBlock]] = []
    windows = 0
    for block in blocks:
        if groups:
            group = groups[-1]
            first = next((b.seq[0] for b in group if b.n_windows), None)
            spanned = 0 if first is None else int(group[-1].seq[-1]) + 1 - int(first)
            if (
                block.stream_id == group[0].stream_id
                and spanned < span
                and windows + block.n_windows <= capacity
            ):
                group.append(block)
                windows += block.n_windows
                continue
        groups.append([block])
        windows = block.n_windows
    return groups


def _published(group: list[WindowBlock], number: int, stream_id: int) -> WindowBlock:
    """A group of recorded blocks as block ``number`` of the replay's one window stream (a
    run recorded across an IOC restart has several)."""
    block = group[0] if len(group) == 1 else WindowBlock.concatenate(group)
    if (block.block_number, block.stream_id) == (number, stream_id):
        return block
    return replace(block, block_number=number, stream_id=stream_id)


def _gated(released, detectors: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the ``detectors`` columns summed by decoded helicity +1 and -1."""
    counts, helicity = released.counts, released.helicity[:, None]
    plus, minus = (counts.sum(axis=0, where=helicity == h) for h in (1, -1))  # no copies
    return plus[detectors], minus[detectors]


@dataclass
class ReplayClock:
    """The clock of a replay (replaces :func:`mupnc.ioc.server.clock_loop`); ``speed`` None =
    max."""

    speed: float | None

    async def __call__(self, ioc, daq, beam, helicity) -> None:
        source: RecordedSource = ioc.source
        window_rate = source.config.window_rate
        ahead = ioc.layout.ring_depth - 1
        span = self.speed * window_rate / PUBLISH_RATE if self.speed else math.inf
        start, last_slow = time.monotonic(), -math.inf
        batches = source.batches()
        while not ioc.ending.is_set():
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            recorded, (plus, minus) = batch
            groups = coalesced(recorded, source.capacity, span)
            blocks = [
                _published(g, source.next_block + i, source.stream_id) for i, g in enumerate(groups)
            ]
            zero = np.zeros_like(plus)
            for i, block in enumerate(blocks):
                # block 0 goes out at once (a subscriber's first value is a block), the
                # rest once the consumer is ready and within half the ring of it
                number = block.block_number
                waited = time.monotonic()
                if number and not await self._consumer_at(ioc, daq, max(-1, number - ahead)):
                    return
                start += time.monotonic() - waited  # the replay clock stands still meanwhile
                data_time = (block.seq[-1] + 1 - source.first_seq) / window_rate
                due = max(
                    data_time / self.speed if self.speed else 0.0,
                    block.block_number / MAX_BLOCK_RATE,
                )
                await asyncio.sleep(max(0.0, start + due - time.monotonic()))
                last = i == len(blocks) - 1
                await daq.publish(block, plus if last else zero, minus if last else zero)
                source.next_seq, source.next_block = int(block.seq[-1]) + 1, block.block_number + 1
                if beam is not None and time.monotonic() - last_slow >= 0.5:
                    last_slow = time.monotonic()
                    await beam.rate.write(float(block.beam_monitor.mean()) * window_rate)
        await daq.gate_scalers(*source.final_scalers())

    @staticmethod
    async def _consumer_at(ioc, daq, block_number: int) -> bool:
        """Wait until the consumer has taken ``block_number``; False if the run ends first."""
        waiting_since = time.monotonic()
        while int(daq.consumed.value) < block_number:
            if ioc.ending.is_set():
                return False
            if time.monotonic() - waiting_since > 10 and block_number == -1:
                log.warning("replay waits for a consumer (mupnc monitor) to write DAQ:CONSUMED")
                waiting_since = math.inf
            await asyncio.sleep(CONSUMER_POLL)
        return True
