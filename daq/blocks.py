"""The window block: what the DAQ produces for a run of consecutive helicity windows.

A *window* is one helicity window (one MPS gate).  Every window carries a sequence
number (``seq``, the MPS counter since the run started); a gap in ``seq`` is a window the
DAQ never produced (a missed window).  Blocks are numbered consecutively by the publisher
(``block_number``); a gap in block numbers is a block lost in transport, which a client
can read back from the IOC's ring buffer.

On Channel Access a block travels as one int32 array (``DBF_LONG`` waveform, atomic per CA
update) of its exact length, layout version 3::

    words [MAGIC, stream_id, block_number, n_windows, n_channels, count_bytes]
    then the little-endian bytes of the following words:
        seq[n] int64, pattern_number[n] int64, beam_monitor[n] float64,
        pattern_phase[n] int16, rotator_readback[n] int16, reported_helicity[n] int8,
        flags[n] uint8, counts[n * n_channels] (window-major) signed integers of
        ``count_bytes`` bytes (1, 2, 4 or 8: the fewest that hold this block's counts),
        zero bytes to the end of the last word

A reader also takes layout version 2, one flat float64 array (every integer exact)::

    [MAGIC_2, stream_id, block_number, n_windows, n_channels,
     seq[n], pattern_number[n], pattern_phase[n], reported_helicity[n], flags[n],
     rotator_readback[n], beam_monitor[n], counts[n * n_channels] (window-major)]

Either may be followed by zeros up to the PV's length.  ``docs/daq-contract.md`` is the
published contract for a DAQ written elsewhere; this module is its reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUT_VERSION = 3
"""Version of the block layout a DAQ publishes (2: float64, 1 had no ``rotator_readback``);
a DAQ states it in the low 16 bits of the magic number."""
READ_LAYOUTS = (2, 3)
"""Layout versions a reader takes; a block of another version is refused."""
SIGNATURE = 0x6D75
"""The high 16 bits of the magic number: "mu" in ASCII."""
MAGIC = SIGNATURE << 16 | LAYOUT_VERSION  # 0x6D750003 = 1836384259
MAGIC_2 = SIGNATURE << 16 | 2  # 0x6D750002 = 1836384258
HEADER = 6
"""int32 words before the bytes of a layout-3 block."""
WINDOW_COLUMNS = (
    ("seq", "<i8"),
    ("pattern_number", "<i8"),
    ("beam_monitor", "<f8"),
    ("pattern_phase", "<i2"),
    ("rotator_readback", "<i2"),
    ("reported_helicity", "i1"),
    ("flags", "u1"),
)
"""A layout-3 block's per-window columns, in wire order, with their wire types."""
WINDOW_BYTES = sum(np.dtype(t).itemsize for _, t in WINDOW_COLUMNS)  # 30
COUNT_BYTES = (1, 2, 4, 8)
"""Widths of a layout-3 block's counts: signed little-endian integers of that many bytes."""
HEADER_2 = 5
PER_WINDOW_FIELDS_2 = 7

NO_CONSUMER = -2
"""``DAQ:CONSUMED`` until a consumer first writes it."""
CONSUMER_READY = -1
"""``DAQ:CONSUMED`` written by a consumer that is ready and has taken no block yet."""
CONSUMER_HAS_RUN = -3
"""``DAQ:CONSUMED`` written by a consumer that has taken every block of the ended run (a
stopping IOC waits for it, :meth:`mupnc.ioc.server.IOCGroup.finish`)."""

FLAG_PATTERN_SYNC = 1
"""Set on the first window of each pattern (the helicity board's pattern-sync bit)."""
FLAG_PAIR_SYNC = 2
"""Set on the first window of each pair of windows (pair-sync bit)."""
FLAG_SETTLE = 4
"""Window inside the spin rotator's ramp/settle gate: helicity not stable, cut from analysis."""
FLAG_MODULATION = 8
"""Window inside a beam-modulation cycle (the coils move the beam): its whole pattern is cut
from the main analysis; the monitor uses it for the sensitivities."""


class BlockFormatError(ValueError):
    """A received array is not a well-formed window block."""


class BlockLayoutError(BlockFormatError):
    """A window block of another layout (wrong magic number or layout version): the DAQ and
    this reader do not speak the same contract, so no block of it can be read."""


@dataclass(frozen=True, slots=True)
class WindowBlock:
    """Consecutive helicity windows as read out by the DAQ (``n`` windows, ``c`` channels).

    ``reported_helicity`` is ``+1``/``-1`` as read from the helicity board (delayed by the
    reporting delay); ``rotator_readback`` is the spin reverser's readback when the
    window was taken (fast: the Pockels-cell state +1/-1; slow: +1/-1, 0 while ramping;
    kick: the kick turn number); ``beam_monitor`` is the beam-monitor integral of each
    window (muons); ``counts`` are detector counts, shape ``(n, c)``.
    """

    stream_id: int
    block_number: int
    seq: np.ndarray
    pattern_number: np.ndarray
    pattern_phase: np.ndarray
    reported_helicity: np.ndarray
    flags: np.ndarray
    rotator_readback: np.ndarray
    beam_monitor: np.ndarray
    counts: np.ndarray

    @property
    def n_windows(self) -> int:
        return int(self.seq.size)

    @property
    def n_channels(self) -> int:
        return int(self.counts.shape[1])

    def select(self, keep: np.ndarray) -> WindowBlock:
        """The same block with only the windows where ``keep`` (bool or indices) holds."""
        per_window = {
            f: getattr(self, f)[keep]
            for f in self.__dataclass_fields__
            if f not in ("stream_id", "block_number")
        }
        return WindowBlock(stream_id=self.stream_id, block_number=self.block_number, **per_window)

    @classmethod
    def concatenate(cls, blocks: list[WindowBlock]) -> WindowBlock:
        """The windows of consecutive ``blocks`` as one block (stream and number of the first)."""
        per_window = {
            f: np.concatenate([getattr(b, f) for b in blocks])
            for f in cls.__dataclass_fields__
            if f not in ("stream_id", "block_number")
        }
        first = blocks[0]
        return cls(stream_id=first.stream_id, block_number=first.block_number, **per_window)

    def pack(self) -> np.ndarray:
        """The layout-3 wire array (int32, exact length): counts at the fewest bytes that
        hold them."""
        n, c = self.n_windows, self.n_channels
        width = count_bytes(self.counts)
        out = np.zeros(wire_length(n, c, width), dtype="<i4")
        out[:HEADER] = (MAGIC, self.stream_id, self.block_number, n, c, width)
        body = out.view(np.uint8)[4 * HEADER :]
        at = 0
        for name, wire_type in WINDOW_COLUMNS:
            size = n * np.dtype(wire_type).itemsize
            body[at : at + size].view(wire_type)[:] = getattr(self, name)
            at += size
        body[at : at + n * c * width].view(f"<i{width}")[:] = self.counts.reshape(-1)
        return out

    @classmethod
    def unpack(cls, wire: np.ndarray) -> WindowBlock:
        """Parse a wire array of layout 3 or 2; raises :class:`BlockLayoutError` (wrong magic
        number or layout version) or :class:`BlockFormatError` (truncated, bad sizes,
        non-zero padding)."""
        wire = np.atleast_1d(wire)  # pyepics gives a 1-element array as a scalar
        if check_layout(wire) == 2:
            return cls._unpack_2(np.asarray(wire, dtype=np.float64))
        if wire.dtype != np.dtype("<i4"):  # e.g. read as float64: exact for int32 values
            wire = wire.astype("<i4")
        if wire.size < HEADER:
            raise BlockFormatError(f"truncated block: {wire.size} words, no {HEADER}-word header")
        stream_id, block_number, n, c, width = (int(v) for v in wire[1:HEADER])
        if n < 0 or c < 0 or width not in COUNT_BYTES:
            raise BlockFormatError(f"bad block header: {n} windows x {c} channels x {width} bytes")
        size = wire_length(n, c, width)
        if wire.size < size:
            raise BlockFormatError(f"truncated block: header says {n}x{c}, got {wire.size} words")
        body = wire.view(np.uint8)[4 * HEADER :]
        end = n * (WINDOW_BYTES + c * width)
        if np.any(body[end:]):
            raise BlockFormatError(
                f"non-zero bytes after the end of a {n}x{c} block (byte {4 * HEADER + end}): "
                f"padding must be zeros; a DAQ packing other columns than layout version 3?"
            )
        columns, at = {}, 0
        for name, wire_type in WINDOW_COLUMNS:
            size = n * np.dtype(wire_type).itemsize
            columns[name] = body[at : at + size].view(wire_type).astype(wire_type[-2:])
            at += size
        counts = body[at:end].view(f"<i{width}").astype(np.int64).reshape(n, c)
        return cls(stream_id=stream_id, block_number=block_number, counts=counts, **columns)

    @classmethod
    def _unpack_2(cls, wire: np.ndarray) -> WindowBlock:
        if wire.size < HEADER_2 or not np.isfinite(wire[:HEADER_2]).all():
            raise BlockFormatError(f"truncated block: no {HEADER_2}-value header")
        stream_id, block_number, n, c = (int(v) for v in wire[1:HEADER_2])
        size = HEADER_2 + n * (PER_WINDOW_FIELDS_2 + c)
        if n < 0 or c < 0 or wire.size < size:
            raise BlockFormatError(f"truncated block: header says {n}x{c}, got {wire.size}")
        if np.any(wire[size:]):
            raise BlockFormatError(
                f"non-zero values after the end of a {n}x{c} block (value {size}): padding "
                "must be zeros; a DAQ packing other columns than layout version 2?"
            )
        col = [wire[HEADER_2 + i * n : HEADER_2 + (i + 1) * n] for i in range(7)]
        return cls(
            stream_id=stream_id,
            block_number=block_number,
            seq=col[0].astype(np.int64),
            pattern_number=col[1].astype(np.int64),
            pattern_phase=col[2].astype(np.int16),
            reported_helicity=col[3].astype(np.int8),
            flags=col[4].astype(np.uint8),
            rotator_readback=col[5].astype(np.int16),
            beam_monitor=col[6].copy(),
            counts=wire[HEADER_2 + PER_WINDOW_FIELDS_2 * n : size].astype(np.int64).reshape(n, c),
        )


def check_layout(wire: np.ndarray) -> int:
    """The layout version (one of :data:`READ_LAYOUTS`) whose magic number ``wire`` starts
    with; refuses, in one line, any other: :class:`BlockLayoutError` naming what it holds
    instead (another version, or no mupnc block at all); :class:`BlockFormatError` if it
    is empty."""
    if wire.size < 1 or not np.isfinite(wire[0]):
        raise BlockFormatError("array does not start with the mupnc window-block magic")
    magic = wire[0]
    if magic == int(magic) and 0 <= magic < 2**32 and int(magic) >> 16 == SIGNATURE:
        version = int(magic) & 0xFFFF
        if version in READ_LAYOUTS:
            return version
        raise BlockLayoutError(
            f"window block of layout version {version}; this reader reads layout versions "
            f"{' and '.join(map(str, READ_LAYOUTS))} (magic {MAGIC:#x}, docs/daq-contract.md)"
        )
    raise BlockLayoutError(
        f"array does not start with the mupnc window-block magic {MAGIC:#x} = {MAGIC} "
        f"(or {MAGIC_2:#x} = {MAGIC_2}; got {float(magic):.17g}; docs/daq-contract.md)"
    )


def count_bytes(counts: np.ndarray) -> int:
    """The fewest bytes (:data:`COUNT_BYTES`) whose signed integers hold every count."""
    if counts.size == 0:
        return 1
    low, high = int(counts.min()), int(counts.max())
    return next(w for w in COUNT_BYTES if -(2 ** (8 * w - 1)) <= low and high < 2 ** (8 * w - 1))


def wire_length(n_windows: int, n_channels: int, count_bytes: int = 8) -> int:
    """int32 words of a layout-3 block of this size (counts of ``count_bytes`` bytes; the
    default 8 gives the most a block of this size can take)."""
    return HEADER + -(-n_windows * (WINDOW_BYTES + n_channels * count_bytes) // 4)
