"""Helicity generator and pattern shapes (JLab conventions, as JAPAN's ``QwHelicity``).

Conventions used throughout mupnc:

* Helicity ``h = +1`` means the muon spin points along its momentum (right-handed, "R");
  ``h = -1`` is left-handed ("L").  A generator bit 1 is ``h = +1``, bit 0 is ``h = -1``.
* The 30-bit LFSR gives only the first window's helicity of each pattern, the
  *pattern polarity*; the pattern *shape* (e.g. quartet ``+--+``) gives the rest:
  window ``i`` of a pattern has helicity ``polarity * shape[i]``.
* The generator bit stream is indexed by pattern number.  With a reporting delay of
  ``d`` patterns the DAQ reads, during pattern ``p``, the polarity that pattern ``p - d``
  actually had: ``reported(p) = bit[p - d]``, equivalently ``actual(p) = bit[p + d]``
  when bits are indexed by the pattern in which they are reported.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

LFSR_BITS = 30
LFSR_MASK = 0x3FFFFFFF
_TAP30, _TAP29, _TAP28, _TAP7 = 0x20000000, 0x10000000, 0x08000000, 0x00000040


def lfsr30_step(register: int) -> tuple[int, int]:
    """Advance the 30-bit Fibonacci LFSR (taps 30, 29, 28, 7) one step.

    Returns ``(new_bit, new_register)``; the new bit enters at the least significant bit.
    """
    bit = (
        bool(register & _TAP30)
        ^ bool(register & _TAP29)
        ^ bool(register & _TAP28)
        ^ bool(register & _TAP7)
    )
    return int(bit), ((register << 1) | bit) & LFSR_MASK


def lfsr30_back_step(register: int) -> int:
    """Undo one :func:`lfsr30_step`: the register before the newest bit was shifted in."""
    old_top = (register ^ (register >> 29) ^ (register >> 28) ^ (register >> 7)) & 1
    return (register >> 1) | (old_top << 29)


_CHUNK = 7  # the shortest tap lag: 7 new bits depend only on the register before them


def lfsr30_bits(register: int, count: int) -> tuple[np.ndarray, int]:
    """The next ``count`` generator bits (uint8 array) and the register after them.

    Seven steps at a time: with ``b[m] = b[m-30] ^ b[m-29] ^ b[m-28] ^ b[m-7]`` the next
    seven bits, newest at the least significant end, are
    ``(r >> 23 ^ r >> 22 ^ r >> 21 ^ r) & 0x7F`` of the current register ``r``.
    """
    chunks = []
    for _ in range(-(-count // _CHUNK)):
        new = (register >> 23 ^ register >> 22 ^ register >> 21 ^ register) & 0x7F
        chunks.append(new)
        register = ((register << _CHUNK) | new) & LFSR_MASK
    words = np.array(chunks, dtype=np.uint32)[:, None]
    shifts = np.arange(_CHUNK - 1, -1, -1, dtype=np.uint32)  # oldest bit first
    bits = ((words >> shifts) & 1).astype(np.uint8).reshape(-1)
    extra = bits.size - count
    for _ in range(extra):  # hand back the register after exactly `count` bits
        register = lfsr30_back_step(register)
    return bits[:count], register


def register_from_bits(bits: np.ndarray | list[int]) -> int:
    """The register state after the 30 most recent bits of ``bits`` were shifted in.

    This is the generator's self-synchronisation: 30 observed pattern polarities, oldest
    first, determine the state that predicts every later one.
    """
    tail = list(bits)[-LFSR_BITS:]
    if len(tail) < LFSR_BITS:
        raise ValueError(f"need {LFSR_BITS} bits to learn the generator state, got {len(tail)}")
    register = 0
    for bit in tail:
        register = ((register << 1) | int(bit)) & LFSR_MASK
    return register


class HelicityGenerator:
    """Pattern-polarity source: one LFSR bit per pattern, as on the JLab helicity board."""

    def __init__(self, seed: int) -> None:
        seed &= LFSR_MASK
        if seed == 0:
            raise ValueError("the LFSR seed must be non-zero (0 is a fixed point)")
        self.register = seed

    def polarities(self, count: int) -> np.ndarray:
        """Next ``count`` pattern polarities as int8 ``+1``/``-1``."""
        bits, self.register = lfsr30_bits(self.register, count)
        return (2 * bits.astype(np.int8) - 1).astype(np.int8)

    def __iter__(self) -> Iterator[int]:
        while True:
            yield int(self.polarities(1)[0])


def _thue_morse(length: int) -> np.ndarray:
    n = np.arange(length)
    ones = np.array([bin(int(k)).count("1") for k in n])
    return np.where(ones % 2 == 0, 1, -1).astype(np.int8)


PATTERN_SHAPES: dict[str, np.ndarray] = {
    "pair": np.array([1, -1], dtype=np.int8),
    "quartet": np.array([1, -1, -1, 1], dtype=np.int8),
    "octet": np.array([1, -1, -1, 1, -1, 1, 1, -1], dtype=np.int8),
    "thue-morse-64": _thue_morse(64),
}
"""Helicity of each window relative to the pattern polarity (first entry always +1)."""


def pattern_shape(name: str) -> np.ndarray:
    """The shape of a named pattern, with a clear error for an unknown name."""
    try:
        return PATTERN_SHAPES[name]
    except KeyError:
        known = ", ".join(PATTERN_SHAPES)
        raise ValueError(f"unknown helicity pattern {name!r} (known: {known})") from None
