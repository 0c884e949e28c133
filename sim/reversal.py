"""Spin-reversal schemes and the window-timing model.

Window timing (all schemes): the helicity board's MPS clock runs at ``window_rate``
(30 Hz to 20 kHz); each window is ``T_settle`` (the reverser switching, no integration)
followed by ``T_stable`` (the integration gate), ``1/window_rate = T_settle + T_stable``.
The MPS counter is the window sequence number ``seq``.

Schemes (``SourceConfig.scheme``):

* ``fast``: pseudo-random pattern reversal as at JLab (future muonium-based source): one
  LFSR bit per pattern, pattern shape and reporting delay as in :mod:`mupnc.daq.helicity`.
  Rotator setpoint = readback = the actual window helicity (+1/-1).
* ``slow``: a spin rotator flips the spin every ``flip_period`` s.  Reversal interval
  ``k`` (``round(flip_period * window_rate)`` windows) has state ``s = +1`` for even ``k``,
  ``-1`` for odd ``k``.  Each interval starts with a ramp (``ramp_time``: readback 0, the
  spin turns through 180 deg, ``P_L = -s P cos(pi t / ramp_time)``) and a settle time
  (``settle_time``: readback ``s``, spin settled); windows that start inside ramp + settle
  are flagged ``FLAG_SETTLE`` (invalid).  Setpoint = ``s``.
* ``kick``: storage-ring kick.  The spin precesses 12 deg per turn (15 turns = 180 deg);
  muons are kicked into the target after ``kick_turns[0]`` turns in even intervals and
  ``kick_turns[1]`` turns in odd ones; setpoint = readback = the turn number and
  ``P_L = P cos(12 deg * turns)``.  The kicker switches between bunches (no ramp); windows
  starting within ``settle_time`` of the switch are flagged ``FLAG_SETTLE``.

For slow and kick the reported (and the gating, "actual") helicity of a window is the
sign of the rotator state ``s``; the "pattern" is the reversal interval (pattern number
``k``, pattern phase = window index in the interval, pattern sync on its first window,
pair sync on the first window of each even interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.daq.scheme import DEGREES_PER_TURN

WINDOW_RATE_RANGE = (30.0, 20_000.0)
MAX_INTERVAL_WINDOWS = 32767
"""The pattern-phase counter is 16 bit: a reversal interval holds at most this many windows."""


def stable_time(window_rate: float, t_settle: float) -> float:
    """T_stable in s: the integration gate of one window."""
    return 1.0 / window_rate - t_settle


def kick_polarization(turns: np.ndarray | int, polarization: float) -> np.ndarray:
    """Longitudinal polarization after ``turns`` storage-ring turns: ``P cos(12 deg * turns)``."""
    return polarization * np.cos(np.radians(DEGREES_PER_TURN * np.asarray(turns, dtype=float)))


def interval_windows(flip_period: float, window_rate: float) -> int:
    """Windows per reversal interval."""
    return max(1, round(flip_period * window_rate))


@dataclass
class ReversalClock:
    """Position in the sequence of reversal intervals (slow and kick schemes).

    ``length`` windows from ``start`` (a seq) form interval ``index``; later intervals get
    the length asked for in :meth:`locate`, so a change of the flip frequency takes effect
    at the next reversal.
    """

    length: int
    start: int = 0
    index: int = 0

    def locate(self, seq: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Interval number and phase of consecutive windows ``seq``; advances the clock."""
        boundary = self.start + self.length
        offset = seq - boundary
        later = offset >= 0
        interval = np.where(later, self.index + 1 + offset // length, self.index)
        phase = np.where(later, offset % length, seq - self.start)
        last = int(seq[-1])
        if last >= boundary:
            full = (last - boundary) // length
            self.index += 1 + full
            self.start = boundary + full * length
            self.length = length
        return interval.astype(np.int64), phase.astype(np.int64)


@dataclass(frozen=True, slots=True)
class RotatorWindows:
    """Per-window rotator state of the slow and kick schemes."""

    state: np.ndarray  # +1/-1: the helicity the rotator is set to
    setpoint: np.ndarray
    readback: np.ndarray
    polarization: np.ndarray  # signed longitudinal polarization
    in_gate: np.ndarray  # window starts inside the ramp/settle gate


def slow_rotator(
    interval: np.ndarray,
    phase: np.ndarray,
    window_rate: float,
    polarization: float,
    ramp_time: float,
    settle_time: float,
    mismatch: bool,
) -> RotatorWindows:
    """The slow spin rotator (conventions in the module docstring).

    ``mismatch``: the rotator stays in the previous state (readback ``-s``, spin ``-s P``).
    """
    state = np.where(interval % 2 == 0, 1, -1).astype(np.int8)
    start = phase / window_rate
    middle = (phase + 0.5) / window_rate
    ramping = start < ramp_time
    if mismatch:
        readback = -state.astype(np.float64)
        spin: np.ndarray = readback * polarization
    else:
        readback = np.where(ramping, 0.0, state)
        turning = -np.cos(np.pi * np.minimum(middle / ramp_time, 1.0)) if ramp_time > 0 else 1.0
        spin = state * polarization * np.where(middle < ramp_time, turning, 1.0)
    return RotatorWindows(
        state=state,
        setpoint=state.astype(np.float64),
        readback=readback,
        polarization=spin,
        in_gate=start < ramp_time + settle_time,
    )


def kick_rotator(
    interval: np.ndarray,
    phase: np.ndarray,
    window_rate: float,
    polarization: float,
    kick_turns: tuple[int, int],
    settle_time: float,
    mismatch: bool,
) -> RotatorWindows:
    """The storage-ring kick (conventions in the module docstring).

    ``mismatch``: the kicker fires after the other state's turn number.
    """
    even = interval % 2 == 0
    setpoint = np.where(even, kick_turns[0], kick_turns[1]).astype(np.float64)
    readback = (
        np.where(even, kick_turns[1], kick_turns[0]).astype(np.float64) if mismatch else setpoint
    )
    return RotatorWindows(
        state=np.where(even, 1, -1).astype(np.int8),
        setpoint=setpoint,
        readback=readback,
        polarization=kick_polarization(readback, polarization),
        in_gate=phase / window_rate < settle_time,
    )


def check_kick_turns(kick_turns: tuple[int, int]) -> str | None:
    """Why ``kick_turns`` cannot serve as (+, -) states, or ``None`` if it can."""
    if len(kick_turns) != 2 or not all(isinstance(t, int) and t >= 0 for t in kick_turns):
        return f"kick_turns must be two turn numbers >= 0, got {kick_turns!r}"
    plus, minus = (math.cos(math.radians(DEGREES_PER_TURN * t)) for t in kick_turns)
    if not plus > 1e-9 > -1e-9 > minus:
        return (
            f"kick_turns {kick_turns!r}: the first must give cos(12 deg * turns) > 0 (helicity +),"
            " the second < 0 (helicity -)"
        )
    return None
