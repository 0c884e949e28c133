"""The recording codec: bit-exact round trips, every block field covered, compact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mupnc.daq.blocks import WindowBlock
from mupnc.db.block_codec import (
    FLOAT_COLUMNS,
    INTEGER_COLUMNS,
    SCALARS,
    RecordingError,
    decode,
    encode,
    raw_size,
)
from mupnc.sim.source import SourceConfig, WindowSource


def assert_identical(a: WindowBlock, b: WindowBlock) -> None:
    for f in dataclasses.fields(WindowBlock):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            assert x.tobytes() == y.tobytes(), f.name
        else:
            assert x == y, f.name


def synthetic(n: int, c: int, rng: np.random.Generator) -> WindowBlock:
    """A block with awkward values: gaps, negatives, huge counts, non-finite floats."""
    seq = np.cumsum(rng.integers(1, 5, n)) + 10**12
    beam = rng.normal(1e5, 3e4, n)
    if n >= 4:
        beam[:4] = (np.nan, -np.inf, -0.0, 5e-324)
    return WindowBlock(
        stream_id=2**40 + 3,
        block_number=-7,
        seq=seq.astype(np.int64),
        pattern_number=(seq // 4).astype(np.int64),
        pattern_phase=rng.integers(-300, 300, n).astype(np.int16),
        reported_helicity=rng.choice(np.array([-1, 1], np.int8), n),
        flags=rng.integers(0, 256, n).astype(np.uint8),
        rotator_readback=rng.integers(-(2**15), 2**15, n).astype(np.int16),
        beam_monitor=beam,
        counts=rng.integers(-(2**61), 2**61, (n, c)).astype(np.int64),
    )


def test_every_window_block_field_is_recorded():
    recorded = {name for name, _ in INTEGER_COLUMNS + FLOAT_COLUMNS} | set(SCALARS)
    assert recorded == {f.name for f in dataclasses.fields(WindowBlock)}


@pytest.mark.parametrize("n, c", [(0, 3), (1, 1), (5, 0), (37, 190)])
def test_awkward_blocks_round_trip_bit_exactly(n, c):
    block = synthetic(n, c, np.random.default_rng(n * 1000 + c))
    assert_identical(decode(encode(block)), block)


def test_simulated_blocks_round_trip_and_are_compact():
    for mode in ("alr", "afb"):
        source = WindowSource(SourceConfig(mode=mode, muon_rate=1e8, seed=4))
        size = raw = 0
        for _ in range(50):
            block = source.next_block_of(12).block  # 240 Hz windows in 20 Hz blocks
            payload = encode(block)
            assert_identical(decode(payload), block)
            size, raw = size + len(payload), raw + raw_size(block)
        assert size <= 1.2 * raw, (mode, size / raw)


def test_a_damaged_payload_is_refused_with_a_clear_error():
    payload = encode(synthetic(10, 4, np.random.default_rng(1)))
    with pytest.raises(RecordingError, match="not a recorded block"):
        decode(b"xx" + payload[2:])
    with pytest.raises(RecordingError, match="corrupt payload"):
        decode(payload[:-5])
    with pytest.raises(RecordingError, match="truncated"):
        decode(payload[:6])


@pytest.mark.parametrize("n", [2**15 - 1, 2**16 + 10])
def test_two_byte_deltas_summed_past_int32_round_trip(n):
    """Deltas of 2 bytes are summed in int32 only over fewer than 2**15 windows (where the
    sum cannot pass 2**31); over more they are summed in int64."""
    counts = np.cumsum(np.full((n, 1), 32767, np.int64), axis=0)  # 32767 n: past 2**31
    block = dataclasses.replace(synthetic(n, 1, np.random.default_rng(5)), counts=counts)
    assert_identical(decode(encode(block)), block)
