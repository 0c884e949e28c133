"""Spin-reversal schemes, the one vocabulary of the source, the DAQ and the monitor.

``fast``: pseudo-random helicity patterns (one 30-bit LFSR bit per pattern, as at JLab);
``slow``: a spin rotator flips the spin every reversal interval; ``kick``: storage-ring
kick turns, the spin precessing between kicks, alternate turn numbers per interval.
"""

from __future__ import annotations

from enum import StrEnum


class Scheme(StrEnum):
    """A spin-reversal scheme; its value is the name used in configs and on the command line."""

    FAST = "fast"
    SLOW = "slow"
    KICK = "kick"


SCHEMES: tuple[str, ...] = tuple(s.value for s in Scheme)
"""The scheme names, in the order above."""

DEGREES_PER_TURN = 12.0
"""Kick scheme: spin precession per storage-ring turn (15 turns = 180 deg); the rotator
readback of a kick run is the turn number, whose helicity is the sign of
``cos(DEGREES_PER_TURN * turns)``."""
