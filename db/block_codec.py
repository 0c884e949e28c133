"""Lossless, compact encoding of a :class:`mupnc.daq.blocks.WindowBlock` for the recording.

Payload layout (little endian), version 3::

    header  <HBqqII : MAGIC, VERSION, stream_id, block_number, n_windows, n_channels
    widths  two bytes: bytes per step of the window columns, of the wide counts (0 = none)
    narrow  ceil(n_channels / 8) bytes: bit k set = channel k is a narrow channel
    body    zlib( integer columns | float columns | minima ) zlib( narrow channels )
            or, for small blocks, zlib( ... | minima | narrow channels )

The integer columns are two matrices: the six per-window ones (``n x 6``) and the counts
of the wide channels.  Each is its first row, int64, then the *steps* from each window to
the next, zigzag mapped to unsigned, cut to the narrowest of 1/2/4/8 bytes and byte-plane
shuffled, so that the slowly varying high bytes compress to almost nothing.
``beam_monitor`` (float64) is byte-plane shuffled and kept bit-exact.

A *narrow channel* is one whose counts in the block span fewer than 256 (a counting
detector at a few counts per window, an integrating one at 500): stored as one byte per
window, its count minus the channel's minimum in the block (``minima``, int64 per narrow
channel), window-major; dense and large, in a zlib stream of their own, Huffman-only (as
small as run-length coding and twice as fast).  Steps of such counts cost more: the
difference of two Poisson counts spreads wider than either does about the minimum (at
520 counts per window the steps need 2 bytes, the offsets 1).

Version 2 (decoded as before): one width byte per integer column, no narrow channels,
one zlib stream, every column's deltas with the first row against 0 (one large first
value widened the whole column).
Decoding gives back every field with the dtype of :meth:`WindowBlock.unpack`.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from mupnc.daq.blocks import WindowBlock

MAGIC = 0x6D72  # "mr"
VERSION = 3  # 2: rotator_readback per window; 3: first rows, steps, narrow channels
READ_VERSIONS = (2, 3)
_HEADER = struct.Struct("<HBqqII")
_ZLIB_LEVEL = 6
HUFFMAN_BYTES = 1 << 16
"""Narrow-channel offsets of at least this many bytes, few of them 0, are a zlib stream
of their own, Huffman-only (twice as fast as run-length coding, as small); fewer go at
the end of the one stream (a second stream's fixed cost is more than it saves)."""

INTEGER_COLUMNS: tuple[tuple[str, type], ...] = (
    ("seq", np.int64),
    ("pattern_number", np.int64),
    ("pattern_phase", np.int16),
    ("reported_helicity", np.int8),
    ("flags", np.uint8),
    ("rotator_readback", np.int16),
    ("counts", np.int64),
)
WINDOW_INTEGERS = INTEGER_COLUMNS[:-1]
"""The per-window integer columns: one ``n x 6`` matrix in version 3."""
FLOAT_COLUMNS: tuple[tuple[str, type], ...] = (("beam_monitor", np.float64),)
SCALARS = ("stream_id", "block_number")
_WIDTHS = (1, 2, 4, 8)
NARROW_MATRIX = 16
"""Running sums of a matrix of at most this many columns use ``cumsum`` (a row loop's
per-row cost would dominate); wider ones add row after row."""


class RecordingError(ValueError):
    """A payload that is not a recorded block of a known version."""


def _zigzag(delta: np.ndarray) -> np.ndarray:
    """``delta`` (int64, changed in place) zigzag-mapped to uint64: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    sign = delta >> 63
    delta <<= 1
    delta ^= sign
    return delta.view(np.uint64)


def _zigzag_steps(values: np.ndarray) -> np.ndarray:
    """Steps from each row to the next (``n - 1`` rows), zigzag-mapped to uint64."""
    v = np.asarray(values, np.int64)
    return _zigzag(np.subtract(v[1:], v[:-1]))


def _running_sums(z: np.ndarray) -> np.ndarray:
    """Running sums along axis 0 of the zigzag-coded ``z`` (any unsigned width).  Values
    of at most 2 bytes summed over fewer than 2**15 rows stay below 2**31 in magnitude, so
    they are summed in int32 (half the memory traffic, the same values)."""
    narrow = z.dtype.itemsize <= 2 and z.shape[0] < 1 << 15
    signed = np.int32 if narrow else np.int64
    z = z.astype(np.uint32 if narrow else np.uint64)
    delta = (z >> 1).view(signed)
    delta ^= -(z & 1).view(signed)
    if delta.shape[1] <= NARROW_MATRIX:
        return np.cumsum(delta, axis=0, dtype=signed)
    for i in range(1, delta.shape[0]):  # row after row: numpy's cumsum along axis 0 of a
        np.add(delta[i - 1], delta[i], out=delta[i])  # wide array is 3x slower
    return delta


def _shuffle(raw: np.ndarray, width: int) -> bytes:
    """Byte planes of ``raw`` (a flat array of ``width``-byte items), plane by plane."""
    if width == 1:
        return raw.tobytes()
    items = raw.view(np.uint8).reshape(-1, width)
    planes = np.empty((width, items.shape[0]), np.uint8)
    for k in range(width):  # a plane at a time: a transposing copy is 4x slower
        planes[k] = items[:, k]
    return planes.tobytes()


def _unshuffle(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`_shuffle`: the items' bytes, item after item."""
    if width == 1:
        return np.frombuffer(data, np.uint8, count)
    planes = np.frombuffer(data, np.uint8).reshape(width, count)
    items = np.empty((count, width), np.uint8)
    for k in range(width):
        items[:, k] = planes[k]
    return items.reshape(-1)


def _width(z: np.ndarray) -> int:
    top = int(z.max()) if z.size else 0
    if top == 0:
        return 0
    return next(w for w in _WIDTHS if w == 8 or top < 1 << (8 * w))


def raw_size(block: WindowBlock) -> int:
    """Bytes of the block as plain fixed-width arrays, the yardstick of the encoding: the
    per-window fields at their :class:`WindowBlock` dtypes, counts as 32-bit scaler words."""
    per_window = sum(np.dtype(t).itemsize for name, t in INTEGER_COLUMNS + FLOAT_COLUMNS)
    per_window -= np.dtype(np.int64).itemsize  # counts: one 32-bit word per channel instead
    return block.n_windows * (per_window + 4 * block.n_channels)


def narrow_channels(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel of ``counts`` (``n x c``): whether its counts span fewer than 256, and
    its minimum (0 where there are no windows)."""
    if counts.shape[0] == 0:
        return np.ones(counts.shape[1], bool), np.zeros(counts.shape[1], np.int64)
    low = counts.min(axis=0)
    span = counts.max(axis=0).view(np.uint64) - low.view(np.uint64)  # exact, no overflow
    return span < 256, low


def _integer_column(values: np.ndarray) -> tuple[int, bytes]:
    """Width byte and stored bytes of an integer column (``n x k``): the first row, int64,
    then the shuffled steps."""
    if values.shape[0] == 0:
        return 0, b""
    z = _zigzag_steps(values)
    width = _width(z)
    first = np.asarray(values[0], "<i8").tobytes()
    return width, first + (_shuffle(z.reshape(-1).astype(f"<u{width}"), width) if width else b"")


def encode(block: WindowBlock) -> bytes:
    """The block as a compact, self-contained payload (see the module docstring)."""
    n, c = block.n_windows, block.n_channels
    counts = np.asarray(block.counts, np.int64).reshape(n, c)
    narrow, low = narrow_channels(counts)
    if not narrow.any():
        wide, offsets, low = counts, np.empty((n, 0), np.uint8), low[:0]
    else:  # every channel's offsets (a byte each), then the narrow ones': cheaper than the
        offsets = np.empty((n, c), np.uint8)  # narrow channels' counts first (8 bytes each)
        np.subtract(counts, low, out=offsets, casting="unsafe")  # exact where narrow
        wide = counts[:, ~narrow]
        if not narrow.all():
            offsets, low = offsets[:, narrow], low[narrow]
    window = np.stack(
        [np.asarray(getattr(block, name), np.int64) for name, _ in WINDOW_INTEGERS], 1
    )
    widths, columns = bytearray(), []
    for values in (window.reshape(n, len(WINDOW_INTEGERS)), wide):
        width, stored = _integer_column(values)
        widths.append(width)
        columns.append(stored)
    for name, dtype in FLOAT_COLUMNS:
        columns.append(_shuffle(np.asarray(getattr(block, name), dtype).astype("<f8"), 8))
    columns.append(low.astype("<i8").tobytes())
    header = _HEADER.pack(MAGIC, VERSION, block.stream_id, block.block_number, n, c)
    header += bytes(widths) + np.packbits(narrow, bitorder="little").tobytes()
    if offsets.size >= HUFFMAN_BYTES and 4 * np.count_nonzero(offsets) > offsets.size:
        # dense offsets (runs of zeros are rare): Huffman-only, a stream of their own
        body = _deflate(b"".join(columns), zlib.Z_RLE)
        return header + body + _deflate(offsets.tobytes(), zlib.Z_HUFFMAN_ONLY)
    return header + _deflate(b"".join([*columns, offsets.tobytes()]), zlib.Z_RLE)


def _deflate(data: bytes, strategy: int) -> bytes:
    """One zlib stream of ``data``."""
    deflate = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
    return deflate.compress(data) + deflate.flush()


def _inflate(data: bytes, version: int, offset_bytes: int) -> tuple[bytes, bytes]:
    """The body's columns and the narrow channels' offsets (``offset_bytes`` bytes: a
    stream of their own, or the end of the only one)."""
    inflate = zlib.decompressobj()
    columns = inflate.decompress(data)
    if not inflate.eof:
        raise zlib.error("the stream is incomplete")
    if version > 2 and inflate.unused_data:
        return columns, zlib.decompress(inflate.unused_data)
    if inflate.unused_data:
        raise zlib.error("data after the stream")
    split = len(columns) - offset_bytes
    return columns[:split], columns[split:]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of set values of ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _joined(
    narrow: np.ndarray, offsets: np.ndarray, low: np.ndarray, wide: np.ndarray
) -> np.ndarray:
    """The counts (``n x c``, int64) from the narrow channels' ``offsets`` above their
    minima ``low`` and the ``wide`` channels' counts; copied run of channels by run (a
    column mask would index element by element)."""
    counts = np.empty((offsets.shape[0], narrow.size), np.int64)
    for mask, part in ((narrow, None), (~narrow, wide)):
        at = 0
        for start, stop in _runs(mask):
            columns = slice(at, at + stop - start)
            if part is None:
                np.add(offsets[:, columns], low[columns], out=counts[:, start:stop])
            else:
                counts[:, start:stop] = part[:, columns]
            at = columns.stop
    return counts


class _Body:
    """Reads a decompressed body front to back."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def take(self, size: int) -> bytes:
        if self.position + size > len(self.data):
            raise RecordingError("payload length does not match its header")
        self.position += size
        return self.data[self.position - size : self.position]

    def integers(self, version: int, width: int, n: int, k: int) -> np.ndarray:
        """An integer column of ``n x k`` values (int64 or narrower: exact)."""
        if width not in (0, *_WIDTHS):
            raise RecordingError("payload has a bad width byte")
        if k == 0:
            return np.zeros((n, 0), np.int64)
        rows = n if version == 2 else max(n - 1, 0)  # version 2: deltas from 0
        first = np.frombuffer(self.take(8 * k), "<i8") if version > 2 and n else None
        if width:
            raw = _unshuffle(self.take(rows * k * width), width, rows * k)
        else:
            raw = np.zeros(rows * k, np.uint8)
        sums = _running_sums(raw.view(f"<u{max(width, 1)}").reshape(rows, k))
        if first is None:
            return sums
        values = np.empty((n, k), np.int64)
        values[0] = first
        np.add(sums, first, out=values[1:])
        return values


def decode(payload: bytes) -> WindowBlock:
    """Inverse of :func:`encode`, bit-exact; raises :class:`RecordingError` on bad input
    (its message says what is wrong; the caller names the block)."""
    if len(payload) < _HEADER.size + len(INTEGER_COLUMNS):
        raise RecordingError("payload is truncated")
    magic, version, stream_id, block_number, n, c = _HEADER.unpack_from(payload)
    if magic != MAGIC or version not in READ_VERSIONS:
        raise RecordingError(
            f"not a recorded block of version {' or '.join(map(str, READ_VERSIONS))} "
            f"(magic {magic:#x}, version {version})"
        )
    offset = _HEADER.size + (len(INTEGER_COLUMNS) if version == 2 else 2)
    widths = payload[_HEADER.size : offset]
    narrow = np.zeros(c, bool)
    if version >= 3:
        if len(payload) < offset + -(-c // 8):
            raise RecordingError("payload is truncated")
        bits = np.frombuffer(payload, np.uint8, -(-c // 8), offset)
        narrow = np.unpackbits(bits, count=c, bitorder="little").astype(bool)
        offset += bits.size
    k = int(np.count_nonzero(narrow))
    try:
        data, offsets = _inflate(payload[offset:], version, n * k)
    except zlib.error as err:
        raise RecordingError(f"corrupt payload ({err})") from None
    if len(offsets) != n * k:
        raise RecordingError("payload length does not match its header")
    body, fields = _Body(data), {}
    if version == 2:
        for (name, dtype), width in zip(INTEGER_COLUMNS, widths, strict=True):
            values = body.integers(version, width, n, c if name == "counts" else 1)
            fields[name] = (values if name == "counts" else values[:, 0]).astype(dtype)
    else:
        window = body.integers(version, widths[0], n, len(WINDOW_INTEGERS))
        for i, (name, dtype) in enumerate(WINDOW_INTEGERS):
            fields[name] = window[:, i].astype(dtype)
        fields["counts"] = body.integers(version, widths[1], n, c - k)
    for name, dtype in FLOAT_COLUMNS:
        raw = _unshuffle(body.take(8 * n), 8, n)
        fields[name] = raw.view("<f8").astype(dtype)
    low = np.frombuffer(body.take(8 * k), "<i8") if version > 2 else None
    if body.position != len(data):
        raise RecordingError("payload length does not match its header")
    if k:
        fields["counts"] = _joined(
            narrow, np.frombuffer(offsets, np.uint8).reshape(n, k), low, fields["counts"]
        )
    return WindowBlock(stream_id=stream_id, block_number=block_number, **fields)
