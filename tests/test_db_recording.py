"""The recording codec: bit-exact round trips, every block field covered, compact."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from support.shipped import shipped_module

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

HEADER_SIZE = 2 + 1 + 8 + 8 + 4 + 4
"""Bytes of a payload's header (``<HBqqII``)."""


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


def old_codec(tmp_path, monkeypatch):
    """The recording codec mupnc shipped before version 3 (commit 8aa9c35): the payloads
    every database recorded until then holds."""
    module = shipped_module("8aa9c35", "db/block_codec.py", tmp_path, monkeypatch)
    assert module.VERSION == 2
    return module


def test_version_2_payloads_recorded_before_decode_bit_exactly(tmp_path, monkeypatch):
    v2 = old_codec(tmp_path, monkeypatch)
    source = WindowSource(SourceConfig(mode="alr", muon_rate=1e8, seed=4))
    blocks = [source.next_block_of(12).block for _ in range(5)]
    blocks += [synthetic(n, c, np.random.default_rng(n + c)) for n, c in [(0, 3), (1, 1), (37, 19)]]
    rng = np.random.default_rng(9)
    blocks.append(dataclasses.replace(blocks[0], counts=rng.poisson(1.0, (12, 18))))
    for block in blocks:
        payload = v2.encode(block)
        assert payload[2] == 2
        assert_identical(decode(payload), block)


def counts_layout(payload: bytes, c: int) -> tuple[int, list[bool]]:
    """The width byte of a version-3 payload's wide channels, and which are narrow."""
    at = HEADER_SIZE + 2
    bits = np.unpackbits(np.frombuffer(payload, np.uint8, -(-c // 8), at), bitorder="little")
    return payload[at - 1], bits[:c].astype(bool).tolist()


@pytest.mark.parametrize(
    ("low", "high", "width"),
    [
        (-20000, 20000, 4),  # steps of up to 40000: 4 bytes
        (10**6, 10**6 + 300, 2),  # integrating, spread 300: the first row apart, 2-byte steps
        (-(2**63), 2**63 - 1, 8),  # every int64: the span does not overflow
    ],
)
def test_narrow_channels_are_offsets_from_their_minimum_the_others_steps(low, high, width):
    """Channels 0-8 count a few per window, 9-10 near 10**9 within a span of 255 (narrow),
    11-13 span more (wide)."""
    rng = np.random.default_rng(abs(high) % 2**32)
    narrow = [rng.poisson(1.0, (300, 9)), 10**9 + rng.integers(0, 256, (300, 2))]
    wide = [rng.integers(low, high, (300, 3), endpoint=True, dtype=np.int64)]
    block = dataclasses.replace(synthetic(300, 14, rng), counts=np.hstack(narrow + wide))
    payload = encode(block)
    assert counts_layout(payload, 14) == (width, [True] * 11 + [False] * 3)
    assert_identical(decode(payload), block)


def test_a_block_whose_channels_are_all_narrow_or_all_wide_round_trips():
    rng = np.random.default_rng(3)
    for counts, narrow in (
        (rng.poisson(520.0, (505, 12)), True),  # the replay bench's MOLLER counts
        (rng.poisson(1e6, (505, 12)), False),
        (np.array([[-(2**63), 2**63 - 1], [2**63 - 1, -(2**63)]] * 2), False),
        (np.array([[0, 255], [255, 0], [7, 7]]), True),
        (np.array([[0, 256], [255, 0], [7, 7]]), None),
    ):
        n, c = counts.shape
        block = dataclasses.replace(synthetic(n, c, rng), counts=counts)
        payload = encode(block)
        layout = counts_layout(payload, c)[1]
        assert layout == ([True, False] if narrow is None else [narrow] * c)
        assert_identical(decode(payload), block)


@pytest.mark.parametrize("mean", [0.01, 0.3, 1.0, 3.0])
def test_few_counts_per_window_cost_about_their_entropy(mean):
    """Poisson counts of the MOLLER shape's order (a count per window and channel) stored
    plain: within 12 % of the Poisson entropy plus a few bytes, which deltas were not (the
    delta of two counts spreads wider: +30 % at a count per window)."""
    rng = np.random.default_rng(int(100 * mean))
    counts = rng.poisson(mean, (1920, 512))
    block = dataclasses.replace(synthetic(1920, 512, rng), counts=counts)
    payload = encode(block)
    assert_identical(decode(payload), block)
    k = np.arange(60)
    p = np.exp(-mean + k * np.log(mean) - np.array([math.lgamma(x + 1) for x in k]))
    entropy_bits = -np.sum(p[p > 0] * np.log2(p[p > 0])) * counts.size
    window_columns = len(encode(dataclasses.replace(block, counts=np.zeros((1920, 0), int))))
    counts_bytes = len(payload) - window_columns
    assert counts_bytes <= 1.12 * entropy_bits / 8 + 64 + 0.2 * counts.size / 8, mean


@pytest.mark.parametrize("byte", [3, 16, 0x81])
def test_a_bad_width_byte_is_refused(byte):
    payload = bytearray(encode(synthetic(10, 4, np.random.default_rng(1))))
    payload[HEADER_SIZE + 1] = byte  # the wide counts' steps
    with pytest.raises(RecordingError, match="bad width byte"):
        decode(bytes(payload))
