"""Channel Access ingest of window blocks (pyepics).

The subscription callback only enqueues the received array; a worker thread (the
monitor's) calls :meth:`BlockIngest.next_blocks`, which unpacks, orders by block number,
refills gaps from the IOC's ring buffer (``DAQ:RING:nnn``) and counts what cannot be
refilled as lost.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass

import epics
import numpy as np

from sim.blocks import HEADER, BlockFormatError, WindowBlock

log = logging.getLogger("mupnc.monitor.ingest")


@dataclass
class IngestCounters:
    blocks_received: int = 0
    blocks_refilled: int = 0
    blocks_lost: int = 0
    windows_lost: int = 0
    malformed: int = 0


class BlockIngest:
    """Subscribes to ``{prefix}DAQ:BLOCK`` and delivers blocks in order, without gaps."""

    def __init__(self, prefix: str, timeout: float = 5.0, connect_timeout: float = 60.0) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.counters = IngestCounters()
        self._queue: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._next_block = 0
        self._ring: dict[int, epics.PV] = {}
        self.ring_depth = self._wait_for_ioc(connect_timeout)
        self._pv = epics.PV(
            prefix + "DAQ:BLOCK", auto_monitor=True, callback=self._on_block, form="native"
        )

    def _wait_for_ioc(self, connect_timeout: float) -> int:
        deadline = time.monotonic() + connect_timeout
        while True:
            depth = epics.caget(self.prefix + "DAQ:RING_DEPTH", timeout=1.0)
            if depth is not None:
                return int(depth)
            if time.monotonic() > deadline:
                raise ConnectionError(f"no IOC answers for {self.prefix}DAQ:RING_DEPTH")

    def caget(self, suffix: str, **kwargs):
        value = epics.caget(self.prefix + suffix, timeout=self.timeout, **kwargs)
        if value is None:
            raise ConnectionError(f"no answer from PV {self.prefix}{suffix}")
        return value

    def _on_block(self, value=None, **_kwargs) -> None:
        # Inside libca: record and return, nothing else.
        if value is not None:
            self._queue.put(value)

    def next_blocks(self, wait: float = 0.2) -> list[WindowBlock]:
        """Blocks received since the last call, in order, gaps refilled from the ring."""
        raw = []
        try:
            raw.append(self._queue.get(timeout=wait))
            while True:
                raw.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        out = []
        for wire in raw:
            if not np.any(np.asarray(wire)[:HEADER]):
                continue  # the PV's initial value (all zeros): nothing published yet
            try:
                block = WindowBlock.unpack(wire)
            except BlockFormatError as err:
                self.counters.malformed += 1
                log.warning("ignored a malformed block: %s", err)
                continue
            if block.block_number < self._next_block:
                continue  # already have it (a refill overtook the monitor update)
            out.extend(self._refill(self._next_block, block.block_number))
            out.append(block)
            self.counters.blocks_received += 1
            self._next_block = block.block_number + 1
        return out

    def resume_at(self, block_number: int) -> None:
        """Deliver blocks from ``block_number`` on (a restarted monitor has the earlier ones)."""
        self._next_block = block_number

    def catch_up(self, last_block: int) -> list[WindowBlock]:
        """Read back from the ring every block up to ``last_block`` not yet delivered."""
        blocks = self._refill(self._next_block, last_block + 1)
        self._next_block = max(self._next_block, last_block + 1)
        return blocks

    def _refill(self, first: int, stop: int) -> list[WindowBlock]:
        blocks = []
        for number in range(first, stop):
            block = self._read_ring(number)
            if block is None:
                self.counters.blocks_lost += 1
                log.error("block %d lost: not in the IOC ring buffer any more", number)
                continue
            self.counters.blocks_refilled += 1
            blocks.append(block)
        return blocks

    def _read_ring(self, number: int) -> WindowBlock | None:
        slot = number % self.ring_depth
        pv = self._ring.get(slot)
        if pv is None:
            pv = self._ring[slot] = epics.PV(
                f"{self.prefix}DAQ:RING:{slot:03d}", auto_monitor=False, form="native"
            )
        wire = pv.get(timeout=self.timeout, use_monitor=False)
        if wire is None:
            return None
        try:
            block = WindowBlock.unpack(wire)
        except BlockFormatError:
            return None
        return block if block.block_number == number else None
