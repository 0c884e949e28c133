"""Helicity generator: reference test vectors, back-step, self-synchronisation, pattern shapes."""

from __future__ import annotations

import numpy as np
import pytest

from mupnc.daq.helicity import (
    LFSR_MASK,
    PATTERN_SHAPES,
    HelicityGenerator,
    lfsr30_back_step,
    lfsr30_bits,
    lfsr30_step,
    pattern_shape,
    register_from_bits,
)

# JAPAN's QwHelicity (30-bit generator test vectors) (32 inserted bits and the final state).
VECTORS = [
    (0x00000001, "00000010000001000000100000001100", 0x0204080C),
    (0x2AAAAAAA, "00000001010101111111101010101101", 0x0157FAAD),
]


@pytest.mark.parametrize(("seed", "bits", "state"), VECTORS)
def test_reference_vectors(seed: int, bits: str, state: int) -> None:
    out, register = lfsr30_bits(seed, 32)
    assert "".join(str(int(b)) for b in out) == bits
    assert register == state
    # step-by-step agrees with the vectorised helper
    register = seed
    for expected in bits:
        bit, register = lfsr30_step(register)
        assert bit == int(expected)
        assert register == register & LFSR_MASK
    assert register == state


@pytest.mark.parametrize(("seed", "bits", "state"), VECTORS)
def test_back_steps_restore_seed(seed: int, bits: str, state: int) -> None:
    register = state
    for _ in range(32):
        register = lfsr30_back_step(register)
    assert register == seed


def test_back_step_inverts_step_on_random_registers() -> None:
    rng = np.random.default_rng(7)
    for register in rng.integers(1, LFSR_MASK + 1, size=500).tolist():
        _, forward = lfsr30_step(register)
        assert lfsr30_back_step(forward) == register


@pytest.mark.parametrize("seed", [0x00000001, 0x2AAAAAAA, 0x1234567, LFSR_MASK])
def test_self_synchronisation_predicts_next_1000(seed: int) -> None:
    generator = HelicityGenerator(seed)
    # skip some patterns so the observation does not start at the seed
    generator.polarities(17)
    observed = generator.polarities(30)
    future = generator.polarities(1000)
    register = register_from_bits((observed > 0).astype(int))
    predicted, _ = lfsr30_bits(register, 1000)
    np.testing.assert_array_equal(2 * predicted.astype(np.int8) - 1, future)


def test_register_from_bits_uses_the_30_most_recent_and_needs_30() -> None:
    bits, register = lfsr30_bits(0x2AAAAAAA, 45)
    assert register_from_bits(bits) == register
    assert register_from_bits(list(bits[-30:])) == register
    with pytest.raises(ValueError, match="30"):
        register_from_bits(bits[:29])


def test_generator_matches_lfsr_and_iterator() -> None:
    bits, _ = lfsr30_bits(0x2AAAAAAA, 64)
    polarities = HelicityGenerator(0x2AAAAAAA).polarities(64)
    assert polarities.dtype == np.int8
    np.testing.assert_array_equal(polarities, 2 * bits.astype(np.int8) - 1)
    iterator = iter(HelicityGenerator(0x2AAAAAAA))
    assert [next(iterator) for _ in range(64)] == polarities.tolist()


@pytest.mark.parametrize("seed", [0, 1 << 30, 3 << 30])
def test_seed_zero_rejected(seed: int) -> None:
    # the seed is masked to 30 bits, so multiples of 2**30 are seed 0 as well
    with pytest.raises(ValueError, match="non-zero"):
        HelicityGenerator(seed)


@pytest.mark.parametrize(
    ("name", "shape"),
    [("pair", "+-"), ("quartet", "+--+"), ("octet", "+--+-++-")],
)
def test_pattern_shapes(name: str, shape: str) -> None:
    expected = [1 if c == "+" else -1 for c in shape]
    assert pattern_shape(name).tolist() == expected
    assert PATTERN_SHAPES[name].tolist() == expected


def test_thue_morse_64() -> None:
    shape = pattern_shape("thue-morse-64")
    assert shape.size == 64
    assert int(shape.sum()) == 0
    assert shape[0] == 1
    assert set(shape.tolist()) == {1, -1}
    # first 16 entries of the Thue-Morse sequence: + - - + - + + - - + + - + - - +
    assert shape[:16].tolist() == [1, -1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1, 1, -1, -1, 1]
    # the 64-window pattern is the octet followed by its Thue-Morse continuation
    np.testing.assert_array_equal(shape[:8], pattern_shape("octet"))


def test_all_shapes_balanced_and_start_positive() -> None:
    for name, shape in PATTERN_SHAPES.items():
        assert shape[0] == 1, name
        assert int(shape.sum()) == 0, name


def test_unknown_pattern_names_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown helicity pattern 'hexo-quad'") as info:
        pattern_shape("hexo-quad")
    for name in PATTERN_SHAPES:
        assert name in str(info.value)
