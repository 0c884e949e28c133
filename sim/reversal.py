"""Spin-reversal schemes and the window-timing model.

Window timing (all schemes): the helicity board's MPS clock runs at ``window_rate``
(30 Hz to 20 kHz); each window is ``T_settle`` (the reverser switching, no integration)
followed by ``T_stable`` (the integration gate), ``1/window_rate = T_settle + T_stable``.
The MPS counter is the window sequence number ``seq``.

Schemes (``SourceConfig.scheme``):

* ``fast``: pseudo-random pattern reversal as at JLab (future muonium-based source): one
  LFSR bit per pattern, pattern shape and reporting delay as in :mod:`mupnc.daq.helicity`.
  Rotator setpoint = readback = the actual window helicity (+1/-1).
* ``slow``: a spin rotator sets the spin every ``flip_period`` s.  Reversal interval
  ``k`` (``round(flip_period * window_rate)`` windows) has state ``s = relative(k)`` of
  the rotator pattern (:class:`mupnc.daq.scheme.RotatorSequence`: quartets ``+--+`` /
  ``-++-`` by default).  Each interval starts with a ramp (``ramp_time``: readback 0; where
  the state changes the spin turns through 180 deg, ``P_L = -s P cos(pi t / ramp_time)``,
  where it does not the rotator re-settles and the spin stays) and a settle time
  (``settle_time``: readback ``s``); windows that start inside ramp + settle are flagged
  ``FLAG_SETTLE`` (invalid) at every interval, flip or not.  Setpoint = ``s``.
* ``kick``: storage-ring kick.  The spin precesses ``degrees_per_turn`` per turn
  (:func:`mupnc.daq.scheme.precession_per_turn` of the momentum: 12.3 deg at the magic
  momentum, 15 turns ~ 180 deg); muons are kicked into the target after ``kick_turns[0]``
  turns in + intervals and ``kick_turns[1]`` turns in - ones; setpoint = readback = the
  turn number and ``P_L = P cos(degrees_per_turn * turns)``.  The kicker switches between
  bunches (no ramp); windows starting within ``settle_time`` of an interval start are
  flagged ``FLAG_SETTLE``.

For slow and kick the reported (and the gating, "actual") helicity of a window is the
sign of the rotator state ``s``; the DAQ's "pattern" is the reversal interval (pattern
number ``k``, pattern phase = window index in the interval, pattern sync on its first
window, pair sync on the first window of each rotator pattern).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.daq.scheme import RotatorSequence, kick_analysing_power
from mupnc.sim.electroweak import MUON_MASS

MUON_ANOMALY = 1.16592059e-3
"""a_mu = (g - 2)/2 (PDG 2024, experimental average)."""
MAGIC_MOMENTUM = MUON_MASS / math.sqrt(MUON_ANOMALY)
"""MeV/c: the g-2 rings' magic momentum, gamma = sqrt(1 + 1/a_mu) = 29.3 (3094 MeV/c)."""


def precession_per_turn(momentum: float) -> float:
    """Spin precession relative to the momentum per storage-ring turn, in degrees.

    In a uniform vertical field the spin turns ``a_mu * gamma`` times faster than the
    momentum (Thomas-BMT equation without electric fields; Jackson, Classical
    Electrodynamics, 3rd ed., sec. 11.11), so one turn rotates it by
    ``a_mu * gamma * 360 deg``: 12.3 deg at the magic momentum (15 turns ~ 180 deg, the
    talk's ring), 0.44 deg at 29 MeV/c.  ``momentum`` in MeV/c.
    """
    gamma = math.sqrt(1.0 + (momentum / MUON_MASS) ** 2)
    return MUON_ANOMALY * gamma * 360.0


def half_turn_turns(degrees_per_turn: float) -> int:
    """Turns that rotate the spin closest to 180 degrees."""
    return max(1, round(180.0 / degrees_per_turn))


WINDOW_RATE_RANGE = (30.0, 20_000.0)
MAX_INTERVAL_WINDOWS = 32767
"""The pattern-phase counter is 16 bit: a reversal interval holds at most this many windows."""


def stable_time(window_rate: float, t_settle: float) -> float:
    """T_stable in s: the integration gate of one window."""
    return 1.0 / window_rate - t_settle


def kick_polarization(
    turns: np.ndarray | int, polarization: float, degrees_per_turn: float
) -> np.ndarray:
    """Longitudinal polarization after ``turns`` ring turns: ``P cos(degrees_per_turn * turns)``."""
    return polarization * kick_analysing_power(turns, degrees_per_turn)


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
    sequence: RotatorSequence,
) -> RotatorWindows:
    """The slow spin rotator (conventions in the module docstring).

    ``mismatch``: the rotator sits in the opposite state (readback ``-s``, spin ``-s P``).
    """
    state = sequence.relative(interval)
    start = phase / window_rate
    middle = (phase + 0.5) / window_rate
    ramping = start < ramp_time
    if mismatch:
        readback = -state.astype(np.float64)
        spin: np.ndarray = readback * polarization
    else:
        readback = np.where(ramping, 0.0, state)
        turning = -np.cos(np.pi * np.minimum(middle / ramp_time, 1.0)) if ramp_time > 0 else 1.0
        flips = (interval == 0) | (sequence.relative(np.maximum(interval - 1, 0)) != state)
        turns = flips & (middle < ramp_time)
        spin = state * polarization * np.where(turns, turning, 1.0)
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
    kick: KickSettings,
    settle_time: float,
    mismatch: bool,
    sequence: RotatorSequence,
) -> RotatorWindows:
    """The storage-ring kick (conventions in the module docstring).

    ``mismatch``: the kicker fires after the other state's turn number.
    """
    state = sequence.relative(interval)
    plus, minus = kick.turns
    setpoint = np.where(state > 0, plus, minus).astype(np.float64)
    readback = np.where(state > 0, minus, plus).astype(np.float64) if mismatch else setpoint
    return RotatorWindows(
        state=state,
        setpoint=setpoint,
        readback=readback,
        polarization=kick_polarization(readback, polarization, kick.degrees_per_turn),
        in_gate=phase / window_rate < settle_time,
    )


@dataclass(frozen=True, slots=True)
class KickSettings:
    """The ring kick: turns before the kick in the + and - states, spin precession per turn."""

    turns: tuple[int, int]
    degrees_per_turn: float

    def problem(self) -> str | None:
        """Why these turns cannot serve as (+, -) states, or ``None`` if they can."""
        turns = self.turns
        if len(turns) != 2 or not all(isinstance(t, int) and t >= 0 for t in turns):
            return f"kick_turns must be two turn numbers >= 0, got {turns!r}"
        plus, minus = kick_analysing_power(np.array(turns), self.degrees_per_turn).tolist()
        if not plus > 1e-9 > -1e-9 > minus:
            step = self.degrees_per_turn
            return (
                f"kick_turns {turns!r}: at {step:.3g} deg/turn the first must give"
                f" cos({step:.3g} deg * turns) > 0 (helicity +), the second < 0 (helicity -)"
            )
        return None
