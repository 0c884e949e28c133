"""Spin-reversal schemes, the one vocabulary of the source, the DAQ and the monitor.

``fast``: pseudo-random helicity patterns (one 30-bit LFSR bit per pattern, as at JLab);
``slow``: a spin rotator flips the spin every reversal interval; ``kick``: storage-ring
kick turns, the spin precessing between kicks, alternate turn numbers per interval.

Slow and kick: the order of the spin states over the reversal intervals ``k = 0, 1, ...``
(the DAQ's pattern number) is the *rotator pattern* (:class:`RotatorSequence`):

* ``quartet`` (the default): groups of four intervals ``+ - - +`` or ``- + + -``, the
  polarity of quartet ``j = k // 4`` pseudo-random: bit ``j`` of the 30-bit LFSR of
  :mod:`mupnc.daq.helicity` started from :data:`ROTATOR_SEQUENCE_SEED`.  A linear drift
  of a detector gain (or of anything else) over a quartet cancels in its asymmetry, as in
  the fast source's quartets, and the pseudo-random polarity keeps slow periodic changes
  from beating with the reversal.  The sequence is public (fixed seed, indexed by the
  interval number), so the monitor predicts every interval's helicity from the first
  reversal it sees, up to one sign it learns from the reports.
* ``pair``: plain alternation ``+ - + - ...`` (before mupnc 0.3 the only one; a linear
  drift biases it).  Runs recorded without a rotator pattern are ``pair`` runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from mupnc.daq.helicity import lfsr30_bits, pattern_shape


class Scheme(StrEnum):
    """A spin-reversal scheme; its value is the name used in configs and on the command line."""

    FAST = "fast"
    SLOW = "slow"
    KICK = "kick"


SCHEMES: tuple[str, ...] = tuple(s.value for s in Scheme)
"""The scheme names, in the order above."""

ROTATOR_PATTERNS: dict[str, tuple[int, ...]] = {"quartet": (1, -1, -1, 1), "pair": (1, -1)}
"""Rotator pattern name -> relative helicities of its intervals (first entry +1)."""
DEFAULT_ROTATOR_PATTERN = "quartet"
RECORDED_ROTATOR_PATTERN = "pair"
"""The rotator pattern of a run recorded before rotator patterns existed."""
ROTATOR_SEQUENCE_SEED = 0x3A5C96E1
"""LFSR seed of the quartet polarities (fixed and public: the monitor predicts them)."""

RECORDED_DEGREES_PER_TURN = 12.0
"""Spin precession per turn of a kick run recorded before it was derived from the momentum."""


def kick_analysing_power(turns: np.ndarray | float, degrees_per_turn: float) -> np.ndarray:
    """``P_L / P`` after ``turns`` turns: ``cos(degrees_per_turn * turns)``."""
    return np.cos(np.radians(degrees_per_turn * np.asarray(turns, dtype=np.float64)))


class RotatorSequence:
    """The relative helicity (+1/-1) of each reversal interval for a rotator pattern.

    The interval helicity is ``sign * relative(k)``, ``sign`` being +1 for a source that
    starts the sequence as published; :meth:`relative` works on any interval numbers
    (non-negative), keeping the LFSR bits it has computed.
    """

    def __init__(self, pattern: str) -> None:
        if pattern not in ROTATOR_PATTERNS:
            known = ", ".join(ROTATOR_PATTERNS)
            raise ValueError(f"unknown rotator pattern {pattern!r} (known: {known})")
        self.pattern = pattern
        self.shape = np.array(ROTATOR_PATTERNS[pattern], dtype=np.int8)
        self.size = int(self.shape.size)
        self._bits = np.zeros(0, dtype=np.uint8)
        self._register = ROTATOR_SEQUENCE_SEED

    def polarity(self, pattern_number: np.ndarray) -> np.ndarray:
        """Polarity (+1/-1) of rotator patterns ``pattern_number`` (``k // size``)."""
        number = np.asarray(pattern_number, dtype=np.int64)
        if self.pattern == "pair":
            return np.ones(number.shape, dtype=np.int8)
        needed = int(number.max(initial=-1)) + 1
        if needed > self._bits.size:
            more, self._register = lfsr30_bits(self._register, needed - self._bits.size + 1024)
            self._bits = np.concatenate([self._bits, more])
        return (2 * self._bits[number].astype(np.int8) - 1).astype(np.int8)

    def relative(self, interval: np.ndarray | int) -> np.ndarray:
        """Relative helicity of intervals ``interval`` (int8 array of +1/-1)."""
        k = np.asarray(interval, dtype=np.int64)
        return (self.polarity(k // self.size) * self.shape[k % self.size]).astype(np.int8)


@dataclass(frozen=True, slots=True)
class RotatorSettings:
    """What the monitor must know of a slow or kick run's reversal: the rotator pattern and
    the kick's spin precession per turn (deg; unused by the slow rotator)."""

    pattern: str = DEFAULT_ROTATOR_PATTERN
    degrees_per_turn: float = RECORDED_DEGREES_PER_TURN


RECORDED_ROTATOR = RotatorSettings(RECORDED_ROTATOR_PATTERN, RECORDED_DEGREES_PER_TURN)
"""The rotator of a run recorded before rotator patterns and momentum-derived precession."""


def stored_rotator(config: Mapping) -> RotatorSettings:
    """The rotator settings of a stored run configuration (keys ``rotator_pattern`` and
    ``kick_precession``); those a key is missing from were recorded before it existed."""
    return RotatorSettings(
        str(config.get("rotator_pattern", RECORDED_ROTATOR.pattern)),
        float(config.get("kick_precession", RECORDED_ROTATOR.degrees_per_turn)),
    )


def interval_windows(flip_period: float, window_rate: float) -> int:
    """DAQ windows per reversal interval of ``flip_period`` s at ``window_rate`` Hz."""
    return max(1, round(flip_period * window_rate))


def pattern_windows(scheme: str | None, pattern: str, config: Mapping) -> int | None:
    """DAQ windows per helicity pattern of a run: the fast ``pattern``'s windows, or (slow,
    kick) the rotator pattern's intervals times the windows per interval, from the run's
    stored ``config`` (``rotator_pattern``, ``flip_period``, ``window_rate``).  A run without
    a ``scheme`` was recorded before the slow schemes existed (fast).  None when the run
    does not say."""
    try:
        if scheme is None or scheme == Scheme.FAST:
            return int(pattern_shape(pattern).size)
        intervals = len(ROTATOR_PATTERNS[stored_rotator(config).pattern])
        return intervals * interval_windows(
            float(config["flip_period"]), float(config["window_rate"])
        )
    except (KeyError, ValueError, TypeError):
        return None
