"""Window-block wire format: pack/unpack round trip, padding, malformed arrays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mupnc.daq.blocks import (
    HEADER,
    MAGIC,
    PER_WINDOW_FIELDS,
    BlockFormatError,
    WindowBlock,
    packed_length,
)


def make_block(n: int = 5, c: int = 3, seed: int = 0) -> WindowBlock:
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
        counts=rng.integers(0, 2**40 + 1, size=(n, c), dtype=np.int64),
    )


def assert_same(a: WindowBlock, b: WindowBlock) -> None:
    assert a.stream_id == b.stream_id
    assert a.block_number == b.block_number
    for name in (
        "seq",
        "pattern_number",
        "pattern_phase",
        "reported_helicity",
        "flags",
        "rotator_readback",
        "beam_monitor",
        "counts",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_round_trip_exact() -> None:
    block = make_block()
    counts = [[0, 1, 2**40], [2**40 - 1, 12345678901, 3], [5, 6, 7], [2**39 + 1, 0, 0], [1, 1, 1]]
    block = replace(block, counts=np.array(counts, dtype=np.int64))
    wire = block.pack()
    assert wire.dtype == np.float64
    assert wire.size == packed_length(5, 3) == HEADER + 5 * (PER_WINDOW_FIELDS + 3)
    assert wire[:HEADER].tolist() == [MAGIC, 7, 123456, 5, 3]
    back = WindowBlock.unpack(wire)
    assert_same(block, back)
    assert back.counts[0, 2] == 2**40
    assert back.counts.dtype == np.int64
    assert back.reported_helicity.dtype == np.int8
    assert back.pattern_phase.dtype == np.int16
    assert back.flags.dtype == np.uint8
    assert back.n_windows == 5 and back.n_channels == 3


@pytest.mark.parametrize(("n", "c"), [(1, 1), (13, 8), (64, 2), (0, 4)])
def test_round_trip_sizes(n: int, c: int) -> None:
    block = make_block(n, c, seed=n + c)
    assert_same(block, WindowBlock.unpack(block.pack()))


def test_padding_to_fixed_length() -> None:
    block = make_block(6, 2)
    size = packed_length(6, 2)
    wire = block.pack(length=1000)
    assert wire.size == 1000
    assert np.all(wire[size:] == 0)
    np.testing.assert_array_equal(wire[:size], block.pack())
    assert_same(block, WindowBlock.unpack(wire))
    # exactly the needed length is fine, one less is not
    assert block.pack(length=size).size == size
    with pytest.raises(BlockFormatError):
        block.pack(length=size - 1)


def test_wrong_magic() -> None:
    wire = make_block().pack()
    wire[0] = MAGIC + 1
    with pytest.raises(BlockFormatError, match="magic"):
        WindowBlock.unpack(wire)
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(np.zeros(100))


@pytest.mark.parametrize("keep", [0, 1, HEADER - 1, HEADER, HEADER + 3])
def test_truncated_header_or_body(keep: int) -> None:
    wire = make_block().pack()
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire[:keep])


def test_truncated_by_one() -> None:
    wire = make_block(5, 3).pack()
    with pytest.raises(BlockFormatError, match="truncated"):
        WindowBlock.unpack(wire[:-1])


def test_negative_sizes_rejected() -> None:
    wire = make_block(5, 3).pack(length=200)
    wire[3] = -1
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire)
    wire = make_block(5, 3).pack(length=200)
    wire[4] = -2
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire)


def test_block_format_error_is_value_error() -> None:
    assert issubclass(BlockFormatError, ValueError)


def test_non_finite_header_is_a_format_error():
    wire = np.full(HEADER + 4, np.nan)
    with pytest.raises(BlockFormatError):
        WindowBlock.unpack(wire)
