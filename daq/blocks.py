"""The window block: what the DAQ produces for a run of consecutive helicity windows.

A *window* is one helicity window (one MPS gate).  Every window carries a sequence
number (``seq``, the MPS counter since the run started); a gap in ``seq`` is a window the
DAQ never produced (a missed window).  Blocks are numbered consecutively by the publisher
(``block_number``); a gap in block numbers is a block lost in transport, which a client
can read back from the IOC's ring buffer.

On Channel Access a block travels as one flat float64 array (atomic per CA update; all
integers involved stay far below 2**53 so they are exact in float64)::

    [MAGIC, stream_id, block_number, n_windows, n_channels,
     seq[n], pattern_number[n], pattern_phase[n], reported_helicity[n], flags[n],
     rotator_readback[n], beam_monitor[n], counts[n * n_channels] (window-major)]

followed by zero padding up to the PV's fixed length.  ``docs/daq-contract.md`` is the
published contract for a DAQ written elsewhere; this module is its reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUT_VERSION = 2
"""Version of the block layout above (1 had no ``rotator_readback``); a DAQ states it in the
low 16 bits of the magic number, and a block of another version is refused."""
SIGNATURE = 0x6D75
"""The high 16 bits of the magic number: "mu" in ASCII."""
MAGIC = SIGNATURE << 16 | LAYOUT_VERSION  # 0x6D750002 = 1836384258
HEADER = 5
PER_WINDOW_FIELDS = 7

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

    def pack(self, length: int | None = None) -> np.ndarray:
        """The flat float64 wire array, zero-padded to ``length`` if given."""
        n, c = self.n_windows, self.n_channels
        size = packed_length(n, c)
        out = np.zeros(size if length is None else length, dtype=np.float64)
        if out.size < size:
            raise BlockFormatError(f"block of {n} windows x {c} channels needs {size} values")
        out[:HEADER] = (MAGIC, self.stream_id, self.block_number, n, c)
        columns = (
            self.seq,
            self.pattern_number,
            self.pattern_phase,
            self.reported_helicity,
            self.flags,
            self.rotator_readback,
            self.beam_monitor,
        )
        for i, column in enumerate(columns):
            out[HEADER + i * n : HEADER + (i + 1) * n] = column
        out[HEADER + PER_WINDOW_FIELDS * n : size] = self.counts.reshape(-1)
        return out

    @classmethod
    def unpack(cls, wire: np.ndarray) -> WindowBlock:
        """Parse a wire array; raises :class:`BlockLayoutError` (wrong magic number or layout
        version) or :class:`BlockFormatError` (truncated, bad sizes, non-zero padding)."""
        wire = np.asarray(wire, dtype=np.float64)
        check_layout(wire)
        stream_id, block_number, n, c = (int(v) for v in wire[1:HEADER])
        size = packed_length(n, c)
        if n < 0 or c < 0 or wire.size < size:
            raise BlockFormatError(f"truncated block: header says {n}x{c}, got {wire.size}")
        if np.any(wire[size:]):
            raise BlockFormatError(
                f"non-zero values after the end of a {n}x{c} block (value {size}): padding "
                "must be zeros; a DAQ packing other columns than layout version "
                f"{LAYOUT_VERSION}?"
            )
        col = [wire[HEADER + i * n : HEADER + (i + 1) * n] for i in range(PER_WINDOW_FIELDS)]
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
            counts=wire[HEADER + PER_WINDOW_FIELDS * n : size].astype(np.int64).reshape(n, c),
        )


def check_layout(wire: np.ndarray) -> None:
    """Refuse, in one line, an array that does not start with this layout's magic number:
    :class:`BlockLayoutError` naming what it holds instead (another version, or no mupnc
    block at all); :class:`BlockFormatError` if it is shorter than the header."""
    if wire.size < HEADER or not np.isfinite(wire[:HEADER]).all():
        raise BlockFormatError(
            f"array does not start with the mupnc window-block magic (no {HEADER}-value header)"
        )
    magic = wire[0]
    if magic == MAGIC:
        return
    if magic == int(magic) and 0 <= magic < 2**32 and int(magic) >> 16 == SIGNATURE:
        raise BlockLayoutError(
            f"window block of layout version {int(magic) & 0xFFFF}; this reader reads layout "
            f"version {LAYOUT_VERSION} (magic {MAGIC:#x}, docs/daq-contract.md)"
        )
    raise BlockLayoutError(
        f"array does not start with the mupnc window-block magic {MAGIC:#x} = {MAGIC} "
        f"(got {magic:.17g}; docs/daq-contract.md)"
    )


def packed_length(n_windows: int, n_channels: int) -> int:
    """Number of float64 values a block of this size occupies on the wire."""
    return HEADER + n_windows * (PER_WINDOW_FIELDS + n_channels)
