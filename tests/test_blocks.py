"""Window-block wire format: pack/unpack round trip at every count width, layout 2 still
read, padding, malformed arrays."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
from support.layout2 import layout_2_length, pack_layout_2

from mupnc.daq.blocks import (
    HEADER,
    MAGIC,
    WINDOW_BYTES,
    BlockFormatError,
    WindowBlock,
    count_bytes,
    wire_length,
)


def make_block(n: int = 5, c: int = 3, seed: int = 0, high: int = 2**40) -> WindowBlock:
    """A block of ``n`` windows x ``c`` channels, counts uniform in [0, ``high``]."""
    rng = np.random.default_rng(seed)
    seq = np.arange(1000, 1000 + n, dtype=np.int64)
    return WindowBlock(
        stream_id=7,
        block_number=123456,
        seq=seq,
        pattern_number=seq // 4,
        pattern_phase=(seq % 4).astype(np.int16),
        reported_helicity=rng.choice(np.array([-1, 1], dtype=np.int8), size=n),
        flags=rng.integers(0, 8, size=n).astype(np.uint8),
        rotator_readback=rng.integers(-1, 16, size=n).astype(np.int16),
        beam_monitor=rng.uniform(1e5, 1e6, size=n),
        counts=rng.integers(0, high + 1, size=(n, c), dtype=np.int64),
    )


def assert_same(a: WindowBlock, b: WindowBlock) -> None:
    """Every field equal, arrays of the same dtype."""
    for field in dataclasses.fields(WindowBlock):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if not isinstance(x, np.ndarray):
            assert x == y, field.name
            continue
        assert x.shape == y.shape, field.name
        assert x.dtype == y.dtype, field.name
        np.testing.assert_array_equal(x, y, err_msg=field.name)


def test_round_trip_exact() -> None:
    block = make_block()
    counts = [[0, 1, 2**40], [2**40 - 1, 12345678901, 3], [5, 6, 7], [2**39 + 1, 0, 0], [1, 1, 1]]
    block = replace(block, counts=np.array(counts, dtype=np.int64))
    wire = block.pack()
    assert wire.dtype == np.int32
    assert wire.size == wire_length(5, 3, 8) == HEADER + (5 * (WINDOW_BYTES + 3 * 8) + 3) // 4
    assert wire[:HEADER].tolist() == [MAGIC, 7, 123456, 5, 3, 8]
    back = WindowBlock.unpack(wire)
    assert_same(block, back)
    assert back.counts[0, 2] == 2**40
    assert back.n_windows == 5 and back.n_channels == 3


@pytest.mark.parametrize(
    ("low", "high", "width"),
    [
        (0, 0, 1),
        (-128, 127, 1),
        (0, 128, 2),
        (-129, 5, 2),
        (-(2**15), 2**15 - 1, 2),
        (0, 2**15, 4),
        (-(2**31), 2**31 - 1, 4),
        (0, 2**31, 8),
        (-(2**63), 2**63 - 1, 8),
    ],
)
def test_counts_travel_at_the_fewest_bytes_that_hold_them(low: int, high: int, width: int) -> None:
    counts = np.array([[low, high, 0], [high, 1, low]], dtype=np.int64)
    block = replace(make_block(2, 3), counts=counts)
    assert count_bytes(counts) == width
    wire = block.pack()
    assert wire[5] == width and wire.size == wire_length(2, 3, width)
    assert_same(block, WindowBlock.unpack(wire))


@pytest.mark.parametrize(("n", "c"), [(1, 1), (13, 8), (64, 2), (0, 4), (3, 5)])
def test_round_trip_sizes(n: int, c: int) -> None:
    for high in (3, 1000, 2**20):
        block = make_block(n, c, seed=n + c, high=high)
        assert_same(block, WindowBlock.unpack(block.pack()))


def test_an_array_read_as_float64_or_padded_with_zeros_reads_the_same() -> None:
    """A client that asks for DBR_DOUBLE gets the int32 words as exact doubles; an EPICS
    waveform of fixed NELM pads with zero words."""
    block = make_block(6, 2, high=300)
    wire = block.pack()
    assert_same(block, WindowBlock.unpack(wire.astype(np.float64)))
    assert_same(block, WindowBlock.unpack(np.concatenate([wire, np.zeros(50, np.int32)])))


def test_wrong_magic() -> None:
    wire = make_block().pack()
    wire[0] = MAGIC + 1
    with pytest.raises(BlockFormatError, match="magic"):
        WindowBlock.unpack(wire)
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(np.zeros(100, np.int32))


@pytest.mark.parametrize("keep", [0, 1, HEADER - 1, HEADER, HEADER + 3])
def test_truncated_header_or_body(keep: int) -> None:
    wire = make_block().pack()
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire[:keep])


def test_truncated_by_one() -> None:
    wire = make_block(5, 3).pack()
    with pytest.raises(BlockFormatError, match="truncated"):
        WindowBlock.unpack(wire[:-1])


@pytest.mark.parametrize(("word", "value"), [(3, -1), (4, -2), (5, 3), (5, 0), (5, 16)])
def test_bad_sizes_or_widths_are_refused(word: int, value: int) -> None:
    wire = make_block(5, 3).pack()
    wire[word] = value
    with pytest.raises(BlockFormatError, match="bad block header"):
        WindowBlock.unpack(wire)


def test_a_non_zero_byte_after_the_block_is_refused() -> None:
    block = make_block(5, 3, high=100)  # 5 x 30 + 15 = 165 bytes: 3 bytes fill the last word
    wire = block.pack()
    wire.view(np.uint8)[-1] = 1
    with pytest.raises(BlockFormatError, match="padding must be zeros"):
        WindowBlock.unpack(wire)


def test_block_format_error_is_value_error() -> None:
    assert issubclass(BlockFormatError, ValueError)


def test_layout_2_blocks_are_still_read() -> None:
    """A DAQ written to contract 1.0 (float64 blocks, fixed-length PV) keeps working."""
    block = make_block(6, 2)
    wire = pack_layout_2(block, length=1000)
    assert wire.dtype == np.float64 and np.all(wire[layout_2_length(6, 2) :] == 0)
    assert_same(block, WindowBlock.unpack(wire))
    assert_same(block, WindowBlock.unpack(pack_layout_2(block)))
    with pytest.raises(BlockFormatError, match="truncated"):
        WindowBlock.unpack(pack_layout_2(block)[:-1])
    for word, value in ((3, -1), (4, -2)):
        bad = pack_layout_2(block, length=200)
        bad[word] = value
        with pytest.raises(BlockFormatError):
            WindowBlock.unpack(bad)


def test_non_finite_layout_2_header_is_a_format_error() -> None:
    wire = pack_layout_2(make_block(), length=100)
    wire[1:5] = np.nan
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire)
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(np.full(10, np.nan))
