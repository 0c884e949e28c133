"""Lossless, compact encoding of a :class:`mupnc.daq.blocks.WindowBlock` for the recording.

Payload layout (little endian)::

    header  <HBqqII : MAGIC, VERSION, stream_id, block_number, n_windows, n_channels
    widths  one byte per integer column: bytes per value after the transform (0 = all zero)
    bytes   (version 3) ceil(n_channels / 8) bytes: bit k set = channel k is a byte channel
    body    (version 3) zlib( integer columns | float columns ) zlib( byte channels )
            (version 2) zlib( integer columns | float columns ), every channel in counts

Integer columns are delta-coded along the windows (the first value against 0), zigzag
mapped to unsigned and cut to the narrowest of 1/2/4/8 bytes (width byte 1/2/4/8, 0 if
all deltas are 0), then byte-plane shuffled, so that the slowly varying high bytes
compress to almost nothing.  ``beam_monitor`` (float64) is byte-plane shuffled and kept
bit-exact.

Counts (version 3): a channel whose counts in the block fit in one signed byte (a few
counts per window: a counting detector) is a *byte channel*, stored as it is, window-major
over the byte channels, in a zlib stream of its own: Huffman-only where few are 0 (as
small as run-length coding and twice as fast), run-length coded otherwise.  Deltas of
such counts cost more than the counts (the difference of two Poisson counts spreads
wider).  The other channels (integrating detectors, beam-monitor words) are the
``counts`` column of the first stream: deltas as above, or their values (signed, width
byte ``PLAIN | w``) where the deltas are no narrower.  Decoding gives back every field
with the dtype of :meth:`WindowBlock.unpack`; version 2 payloads decode as before.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from mupnc.daq.blocks import WindowBlock, count_bytes

MAGIC = 0x6D72  # "mr"
VERSION = 3  # 2: rotator_readback per window; 3: plain columns
READ_VERSIONS = (2, 3)
PLAIN = 0x80
"""Flag of a width byte: the column's values as they are (signed), not zigzag deltas."""
_HEADER = struct.Struct("<HBqqII")
_ZLIB_LEVEL = 6

INTEGER_COLUMNS: tuple[tuple[str, type], ...] = (
    ("seq", np.int64),
    ("pattern_number", np.int64),
    ("pattern_phase", np.int16),
    ("reported_helicity", np.int8),
    ("flags", np.uint8),
    ("rotator_readback", np.int16),
    ("counts", np.int64),
)
FLOAT_COLUMNS: tuple[tuple[str, type], ...] = (("beam_monitor", np.float64),)
SCALARS = ("stream_id", "block_number")
_WIDTHS = (1, 2, 4, 8)


class RecordingError(ValueError):
    """A payload that is not a recorded block of a known version."""


def _zigzag_deltas(values: np.ndarray) -> np.ndarray:
    """Deltas along axis 0 (first row against 0), zigzag-mapped to uint64."""
    v = np.asarray(values, np.int64)
    delta = np.empty_like(v)
    delta[:1] = v[:1]
    np.subtract(v[1:], v[:-1], out=delta[1:])
    sign = delta >> 63
    delta <<= 1
    delta ^= sign
    return delta.view(np.uint64)


def _undo_zigzag_deltas(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_zigzag_deltas` for ``z`` of any unsigned width.  Deltas of at
    most 2 bytes summed over fewer than 2**15 rows stay below 2**31 in magnitude, so they
    are summed in int32 (half the memory traffic, the same values)."""
    narrow = z.dtype.itemsize <= 2 and z.shape[0] < 1 << 15
    signed = np.int32 if narrow else np.int64
    z = z.astype(np.uint32 if narrow else np.uint64)
    delta = (z >> 1).view(signed)
    delta ^= -(z & 1).view(signed)
    if delta.shape[1] == 1:
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


def _deltas(values: np.ndarray) -> tuple[int, np.ndarray | None]:
    """Width byte and stored items (flat; None for width 0) of zigzag deltas of ``values``
    (shaped ``(n, columns)``)."""
    z = _zigzag_deltas(values)
    width = _width(z)
    return width, z.reshape(-1).astype(f"<u{width}") if width else None


def _wide_counts(counts: np.ndarray) -> tuple[int, np.ndarray | None]:
    """Width byte and stored items of the channels that are not byte channels: deltas,
    or their values where the deltas are no narrower."""
    plain = count_bytes(counts)
    width, items = _deltas(counts)
    if width <= plain:
        return width, items
    return PLAIN | plain, counts.reshape(-1).astype(f"<i{plain}")


def byte_channels(counts: np.ndarray) -> np.ndarray:
    """Per channel of ``counts`` (``n x c``): whether all its counts fit in a signed byte."""
    if counts.shape[0] == 0:
        return np.ones(counts.shape[1], bool)
    return (counts.min(axis=0) >= -128) & (counts.max(axis=0) <= 127)


def encode(block: WindowBlock) -> bytes:
    """The block as a compact, self-contained payload (see the module docstring)."""
    n, c = block.n_windows, block.n_channels
    counts = np.asarray(block.counts).reshape(n, c)
    in_bytes = byte_channels(counts)
    if in_bytes.all():
        small, wide = counts.astype("<i1"), counts[:, :0]
    else:
        small, wide = counts[:, in_bytes].astype("<i1"), counts[:, ~in_bytes]
    widths, window_columns = bytearray(), []
    for name, _ in INTEGER_COLUMNS:
        if name == "counts":
            width, items = _wide_counts(wide)
        else:
            width, items = _deltas(np.asarray(getattr(block, name)).reshape(n, 1))
        widths.append(width)
        if items is not None:
            window_columns.append(_shuffle(items, width & ~PLAIN))
    for name, dtype in FLOAT_COLUMNS:
        window_columns.append(_shuffle(np.asarray(getattr(block, name), dtype).astype("<f8"), 8))
    dense = 4 * np.count_nonzero(small) > small.size  # runs of zeros are rare
    header = _HEADER.pack(MAGIC, VERSION, block.stream_id, block.block_number, n, c)
    return (
        header
        + bytes(widths)
        + np.packbits(in_bytes, bitorder="little").tobytes()
        + _deflate(b"".join(window_columns), zlib.Z_RLE)
        + _deflate(small.tobytes(), zlib.Z_HUFFMAN_ONLY if dense else zlib.Z_RLE)
    )


def _deflate(data: bytes, strategy: int) -> bytes:
    """One zlib stream of ``data``."""
    deflate = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, 8, strategy)
    return deflate.compress(data) + deflate.flush()


def _inflate(data: bytes, version: int) -> tuple[bytes, bytes]:
    """The body's two streams (version 2: one, and no byte channels)."""
    if version == 2:
        return zlib.decompress(data), b""
    inflate = zlib.decompressobj()
    columns = inflate.decompress(data)
    if not inflate.eof:
        raise zlib.error("the first stream is incomplete")
    return columns, zlib.decompress(inflate.unused_data)


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
    offset = _HEADER.size + len(INTEGER_COLUMNS)
    widths = payload[_HEADER.size : offset]
    in_bytes = np.zeros(c, bool)
    if version >= 3:
        if len(payload) < offset + -(-c // 8):
            raise RecordingError("payload is truncated")
        bits = np.frombuffer(payload, np.uint8, -(-c // 8), offset)
        in_bytes = np.unpackbits(bits, count=c, bitorder="little").astype(bool)
        offset += bits.size
    try:
        body, small = _inflate(payload[offset:], version)
    except zlib.error as err:
        raise RecordingError(f"corrupt payload ({err})") from None
    wide_channels = c - int(np.count_nonzero(in_bytes))
    if len(small) != n * (c - wide_channels):
        raise RecordingError("payload length does not match its header")
    fields, position = {}, 0
    for (name, dtype), width in zip(INTEGER_COLUMNS, widths, strict=True):
        shape = (n, wide_channels) if name == "counts" else (n, 1)
        count, plain, width = n * shape[1], width & PLAIN, width & ~PLAIN
        if width not in (0, *_WIDTHS) or (plain and (version < 3 or not width)):
            raise RecordingError(f"payload has a bad width byte for {name}")
        if width:
            size = count * width
            raw = _unshuffle(body[position : position + size], width, count)
            position += size
        else:
            raw = np.zeros(count, np.uint8)
        if plain:
            values = raw.view(f"<i{width}").reshape(shape)
        else:
            values = _undo_zigzag_deltas(raw.view(f"<u{max(width, 1)}").reshape(shape))
        fields[name] = (values if name == "counts" else values[:, 0]).astype(dtype)
    for name, dtype in FLOAT_COLUMNS:
        raw = _unshuffle(body[position : position + 8 * n], 8, n)
        fields[name] = raw.view("<f8").astype(dtype)
        position += 8 * n
    if position != len(body):
        raise RecordingError("payload length does not match its header")
    if wide_channels < c:
        counts = np.empty((n, c), np.int64)
        counts[:, in_bytes] = np.frombuffer(small, "<i1").reshape(n, c - wide_channels)
        counts[:, ~in_bytes] = fields["counts"]
        fields["counts"] = counts
    return WindowBlock(stream_id=stream_id, block_number=block_number, **fields)
