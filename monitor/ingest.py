"""Channel Access ingest of window blocks (pyepics).

The subscription callback only enqueues the received array; a worker thread (the
monitor's) calls :meth:`BlockIngest.next_blocks`, which unpacks, orders by block number,
refills gaps from the IOC's ring buffer (``DAQ:RING:nnn``) and counts what cannot be
refilled as lost.

An IOC process numbers its blocks from 0 in a window stream of its own (``stream_id``).
A block of a new stream means the IOC was restarted: the blocks of that stream before it
are refilled from the new ring, and the windows of the run's down time show up as a gap in
the sequence numbers (``missed_windows``).  If the restarted IOC serves another run, the
ingest stops delivering and says so (:attr:`BlockIngest.new_run`).  Windows are delivered
at most once: a window whose sequence number was delivered already is dropped.  While the
IOC is away, pyepics reconnects by itself; :meth:`BlockIngest.caget` raises
``ConnectionError`` meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import epics
import numpy as np
from epics import ca
from epics.ca import ChannelAccessException, ChannelAccessGetFailure

from mupnc.daq.blocks import HEADER, BlockFormatError, BlockLayoutError, WindowBlock, check_layout
from mupnc.monitor.ingest_counters import IngestCounters
from mupnc.monitor.stop import StoppedError

log = logging.getLogger("mupnc.monitor.ingest")

CA_FAILURES = (ChannelAccessException, ChannelAccessGetFailure)
"""What pyepics raises when a channel goes away during a get."""

WAITING_NOTE_INTERVAL = 15.0
"""Seconds between the notes of a monitor waiting for its IOC."""
OPTIONAL_PV_TIMEOUT = 2.0
"""Seconds :meth:`BlockIngest.optional_values` waits, all PVs together, for an IOC to
answer (one that serves a PV answers on a quiet loopback in milliseconds)."""

RING_READ_BATCH = 32
"""Ring slots a refill reads at once: their round trips overlap (13-16x faster than one at a
time, ``bench/bench_refill.py``); libca holds at most this many blocks at a time."""

RING_RISK_FRACTION = 4
"""A refill reads on past its per-call bound while the next block is among the oldest
quarter of the ring: those would be overwritten before the next call."""
REFILL_BATCHES_PER_CALL = 2
"""Ring read batches one :meth:`BlockIngest.next_blocks` (or one step of
:meth:`BlockIngest.catch_up`) delivers at most: a refill of the whole ring (20 s of blocks,
hundreds of MB at MOLLER scale) reaches the analysis a few batches at a time, so the monitor
never holds more than these blocks in memory at once.  The rest follows on the next call."""


def optional_values(
    names: Sequence[str], as_string: bool = False, timeout: float = OPTIONAL_PV_TIMEOUT
) -> dict[str, object]:
    """Values of PVs an IOC may not serve, looked up in parallel within one overall
    ``timeout`` (s); a PV that does not answer is absent from the result."""
    if not names:
        return {}
    try:
        values = epics.caget_many(
            list(names), as_string=as_string, timeout=timeout, connection_timeout=timeout
        )
    except CA_FAILURES as err:  # the IOC went away during the lookup
        raise ConnectionError(f"no answer from the IOC: {err}") from None
    return {n: v for n, v in zip(names, values, strict=True) if v is not None}


class BlockIngest:
    """Subscribes to ``{prefix}DAQ:BLOCK`` and delivers blocks in order, without gaps."""

    def __init__(
        self,
        prefix: str,
        timeout: float = 5.0,
        connect_timeout: float = 60.0,
        stop: threading.Event | None = None,
    ) -> None:
        """Wait (at most ``connect_timeout`` s, or until ``stop`` is set:
        :class:`mupnc.monitor.stop.StoppedError`) for the IOC, then subscribe."""
        self.prefix = prefix
        self.timeout = timeout
        self.counters = IngestCounters()
        self.run: int | None = None
        """The run being monitored; a stream of another run is not delivered."""
        self.new_run: int | None = None
        """Set when the IOC serves another run than :attr:`run` (it was restarted)."""
        self.incompatible: str | None = None
        """Set (why, one line) when a block of another layout arrived: nothing more is
        delivered (``docs/daq-contract.md``)."""
        self._queue: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self._held: list[np.ndarray] = []  # received, not yet processed (IOC unreachable)
        self.refill_pending = False
        """A refill from the ring stopped at its per-call bound; the next call goes on."""
        self._stream: int | None = None
        self._next_block = 0
        self._last_seq = -1
        self.ring_depth = self._wait_for_ioc(connect_timeout, stop)
        self._pv = epics.PV(
            prefix + "DAQ:BLOCK", auto_monitor=True, callback=self._on_block, form="native"
        )

    def _wait_for_ioc(self, connect_timeout: float, stop: threading.Event | None) -> int:
        name = self.prefix + "DAQ:RING_DEPTH"
        pv = epics.PV(name, auto_monitor=False)
        started = time.monotonic()
        said = -math.inf
        while not pv.wait_for_connection(timeout=0.5):
            if stop is not None and stop.is_set():
                raise StoppedError("stopped while waiting for the IOC")
            waited = time.monotonic() - started
            if waited > connect_timeout:
                raise ConnectionError(f"no IOC answers for {name} (waited {connect_timeout:g} s)")
            if waited - said >= WAITING_NOTE_INTERVAL:  # not twice a second into a journal
                log.info("waiting for the IOC (%s): %.0f of %g s", name, waited, connect_timeout)
                said = waited
        depth = pv.get(timeout=self.timeout)
        if depth is None:
            raise ConnectionError(f"no answer from PV {name}")
        return int(depth)

    def caget(self, suffix: str, **kwargs):
        """The PV's value as the IOC serves it now (a get, never the last monitor update
        pyepics holds: after an IOC restart that can be the old IOC's until the new one's
        first update arrives); ``ConnectionError`` if the IOC does not answer."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("use_monitor", False)
        try:
            value = epics.caget(self.prefix + suffix, **kwargs)
        except CA_FAILURES as err:  # e.g. disconnected during the get
            raise ConnectionError(f"no answer from PV {self.prefix}{suffix}: {err}") from None
        if value is None:
            raise ConnectionError(f"no answer from PV {self.prefix}{suffix}")
        return value

    def check_layout(self) -> None:
        """Refuse (:class:`mupnc.daq.blocks.BlockLayoutError`, one line) a DAQ whose latest
        block has another magic number or layout version; nothing published yet passes."""
        header = np.atleast_1d(self.caget("DAQ:BLOCK", count=HEADER))  # 1 value: a scalar
        if np.any(header):
            try:
                check_layout(header)
            except BlockLayoutError as err:
                raise BlockLayoutError(f"{self.prefix}DAQ:BLOCK: {err}") from None

    def put_setpoint(self, suffix: str, value: float) -> None:
        """Write a setpoint and read it back: ``ConnectionError`` if the IOC does not answer,
        ``ValueError`` if it keeps another value (it refused the put)."""
        name = self.prefix + suffix
        try:
            done = epics.caput(name, value, wait=True, timeout=self.timeout)
        except CA_FAILURES as err:
            raise ConnectionError(f"no answer from PV {name}: {err}") from None
        if done is None:
            raise ConnectionError(f"no answer from PV {name}")
        held = self.caget(suffix)
        if not abs(float(held) - value) <= 1e-9 * max(1.0, abs(value)):
            raise ValueError(f"{name} refused {value:g} (holds {float(held):g})")

    def optional_values(
        self, suffixes: Sequence[str], as_string: bool = False, timeout: float = OPTIONAL_PV_TIMEOUT
    ) -> dict[str, object]:
        """:func:`optional_values` of this IOC's PVs, by suffix."""
        values = optional_values([self.prefix + s for s in suffixes], as_string, timeout)
        return {s: values[self.prefix + s] for s in suffixes if self.prefix + s in values}

    def _on_block(self, value=None, **_kwargs) -> None:
        # Inside libca: record and return, nothing else.
        if value is not None:
            self._queue.put(value)

    def next_blocks(self, wait: float = 0.2) -> list[WindowBlock]:
        """Blocks received since the last call, in order, gaps refilled from the ring (at
        most :data:`REFILL_BATCHES_PER_CALL` batches of it per call: a longer refill goes on
        at the next call, which then does not wait)."""
        raw = []
        try:
            raw.append(self._queue.get(timeout=0 if self._held else wait))
            while True:
                raw.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        # a PV's initial value (zeros, an IOC's at its start: nothing published yet) is no
        # block; pyepics gives a 1-element array as a scalar
        raw = [w for w in map(np.atleast_1d, raw) if np.any(w[:HEADER])]
        raw, self._held, self.refill_pending = self._held + raw, [], False
        out: list[WindowBlock] = []
        for i, wire in enumerate(raw):
            try:
                block = WindowBlock.unpack(wire)
            except BlockLayoutError as err:
                self.counters.malformed += 1
                self.incompatible = str(err)
                log.error("a block of another layout: %s", err)
                break
            except BlockFormatError as err:
                self.counters.malformed += 1
                log.warning("ignored a malformed block: %s", err)
                continue
            try:
                if block.stream_id != self._stream and not self._follow_stream(block.stream_id):
                    break  # another run: nothing more of this one will come
                if block.block_number < self._next_block:
                    continue  # already have it (a refill overtook the monitor update)
                newest = max(int(w[2]) for w in raw[i:] if int(w[1]) == block.stream_id)
                if not self._refill(block.block_number, out, REFILL_BATCHES_PER_CALL, newest):
                    # goes on at the next call; this stream's later blocks are read back from
                    # the ring then, not held meanwhile (0.4 MB each at MOLLER scale)
                    later = [w for w in raw[i + 1 :] if int(w[1]) != block.stream_id]
                    self._held, self.refill_pending = [wire, *later], True
                    log.info(
                        "refilling from the ring: %d blocks to block %d",
                        block.block_number - self._next_block,
                        block.block_number,
                    )
                    break
            except ConnectionError as err:  # the refill goes on from here when it answers
                log.warning("%s: holding %d blocks until the IOC answers", err, len(raw) - i)
                self._held = raw[i:]
                break
            out.append(block)
            self.counters.blocks_received += 1
            self._next_block = block.block_number + 1
        return self._unseen(out)

    def drop_received(self) -> None:
        """Forget the blocks received and not yet delivered (those of a run not taken)."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._held = []

    def resume_at(self, stream_id: int, block_number: int, last_seq: int) -> None:
        """Deliver blocks of stream ``stream_id`` from ``block_number`` on, and only windows
        after ``last_seq`` (a restarted monitor has the earlier ones)."""
        self._stream, self._next_block, self._last_seq = stream_id, block_number, last_seq

    def catch_up(self, last_block: int) -> Iterator[list[WindowBlock]]:
        """Read back from the ring every block up to ``last_block`` not yet delivered, a
        few batches at a time (:data:`REFILL_BATCHES_PER_CALL`)."""
        done = False
        while not done:
            blocks: list[WindowBlock] = []
            done = self._refill(last_block + 1, blocks, REFILL_BATCHES_PER_CALL)
            yield self._unseen(blocks)

    def _follow_stream(self, stream_id: int) -> bool:
        """A block of a new stream arrived: follow it if it carries on :attr:`run`."""
        run = int(self.caget("RUN:NUMBER"))
        if self.run is not None and run != self.run:
            self.new_run = run
            log.error("the IOC now serves run %d: run %d gets no more windows", run, self.run)
            return False
        if self._stream is not None:
            log.warning(
                "the IOC was restarted: window stream %d follows %d", stream_id, self._stream
            )
        self.counters.streams += 1
        self._stream, self._next_block = stream_id, 0
        self.ring_depth = int(self.caget("DAQ:RING_DEPTH"))
        return True

    def _refill(
        self, stop: int, out: list[WindowBlock], batches: int, newest: int | None = None
    ) -> bool:
        """Append to ``out`` the blocks before ``stop`` not yet delivered, read back from the
        ring: ``batches`` batches of :data:`RING_READ_BATCH`, more while the next block is
        among the oldest 1/:data:`RING_RISK_FRACTION` of the ring that ends at block
        ``newest`` (default ``stop - 1``; the IOC overwrites those soonest).  What the ring
        no longer holds is lost.  True once every block before ``stop`` is delivered or
        lost.  Raises ``ConnectionError`` if the IOC goes away meanwhile (what was read is
        in ``out``; the rest is read next time)."""
        first = self._next_block
        overwritten = max(0, stop - self.ring_depth - first)  # gone from the ring: lost
        if overwritten:
            self.counters.blocks_lost += overwritten
            log.error(
                "blocks %d..%d lost: not in the IOC ring any more", first, first + overwritten - 1
            )
            self._next_block = first + overwritten
        end = stop if newest is None else newest + 1
        at_risk = end - self.ring_depth + self.ring_depth // RING_RISK_FRACTION
        for batch in itertools.count():
            if self._next_block >= stop:
                return True
            if batch >= batches and self._next_block >= at_risk:
                break
            numbers = range(self._next_block, min(self._next_block + RING_READ_BATCH, stop))
            lost = []
            for number, block in zip(numbers, self._read_ring(numbers), strict=True):
                if block is None:
                    lost.append(number)
                else:
                    out.append(block)
            if lost:
                log.error(
                    "%d blocks of %d..%d lost: overwritten in the IOC ring before they were read",
                    len(lost),
                    lost[0],
                    lost[-1],
                )
            self.counters.blocks_lost += len(lost)
            self.counters.blocks_refilled += len(numbers) - len(lost)
            self._next_block = numbers[-1] + 1
        return self._next_block >= stop

    def _unseen(self, blocks: list[WindowBlock]) -> list[WindowBlock]:
        """``blocks`` without the windows delivered already (by sequence number)."""
        out = []
        for block in blocks:
            fresh = block.seq > self._last_seq
            if not fresh.all():
                self.counters.duplicate_windows += int(block.n_windows - fresh.sum())
                log.warning(
                    "dropped %d windows of block %d: delivered already",
                    block.n_windows - fresh.sum(),
                    block.block_number,
                )
                if not fresh.any():
                    continue
                block = block.select(fresh)
            self._last_seq = int(block.seq[-1])
            out.append(block)
        return out

    def _read_ring(self, numbers: range) -> list[WindowBlock | None]:
        """Blocks ``numbers`` from their ring slots, read together so that their round trips
        overlap; None for a slot that holds another block.

        Each read opens and clears its own channel: pyepics keeps the last value got on a
        channel (a PV object, and libca's raw copy), which for a few hundred ring slots of
        large blocks would hold hundreds of MB for good."""
        slots = [number % self.ring_depth for number in numbers]
        chids = [
            ca.create_channel(f"{self.prefix}DAQ:RING:{slot:03d}", connect=False, auto_cb=False)
            for slot in slots
        ]
        try:
            for slot, chid in zip(slots, chids, strict=True):
                if not ca.connect_channel(chid, timeout=self.timeout):
                    raise ConnectionError(f"ring slot {slot}: the IOC does not answer")
            for chid in chids:
                ca.get(chid, wait=False)
            wires = [ca.get_complete(chid, timeout=self.timeout) for chid in chids]
            if any(wire is None for wire in wires):  # timed out: read again later
                raise ConnectionError(f"ring slots {slots[0]}..{slots[-1]}: the IOC is slow")
        except CA_FAILURES as err:
            raise ConnectionError(f"ring slots {slots[0]}..{slots[-1]} unreadable: {err}") from None
        finally:
            for chid in chids:
                ca.clear_channel(chid)
        return [self._ring_block(wire, number) for wire, number in zip(wires, numbers, strict=True)]

    def _ring_block(self, wire: np.ndarray, number: int) -> WindowBlock | None:
        """The block read from a ring slot if it is block ``number`` of this stream."""
        try:
            block = WindowBlock.unpack(wire)
        except BlockFormatError:
            return None
        if (block.stream_id, block.block_number) != (self._stream, number):
            return None
        return block
