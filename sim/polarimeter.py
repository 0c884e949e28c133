"""The muon polarimeter and the spin truth it measures (physics truth).

A muon decays with its positron emitted preferentially along its spin: integrated over the
energy spectrum the positrons' angular distribution is ``1 + a P cos(theta)`` (V-A; the
analysing power ``a`` ~ 1/3).  Two counters, forward and backward of the stopping region
along the spin of helicity +1 (channel roles ``pol_forward`` and ``pol_backward``,
:mod:`mupnc.daq.channel_map`), count per window::

    forward  ~ Poisson(muons * acceptance           * (1 + a P_L)) + Poisson(background T)
    backward ~ Poisson(muons * acceptance * balance * (1 - a P_L)) + Poisson(background T)

then each loses counts to its non-paralysable ``dead_time`` tau: ``n / (1 + n tau / T)``
(rounded; T the window's gate).  ``P_L`` is the signed longitudinal polarization of the
window, the same the detectors see: with a complete flip ``+P`` and ``-P``; here the ``-``
state may carry another magnitude (``polarization_minus``: ``|P-| < |P+|`` is an incomplete
flip, 0 a rotator stuck between its states), may change at ``fault_at`` s into the run
(``fault_polarization_minus``) and both states may lose polarization slowly
(``depolarization``, fraction per hour, linear).  ``balance`` is the backward counter's
efficiency relative to what the channel map says (1: the map is right).

With ``enabled`` the channel map gains the counters ``pol_fwd`` and ``pol_bwd`` (with
``acceptance`` and ``analysing_power``) unless it has polarimeter channels of its own.
Disabled, nothing changes: the spin is ``+-P`` and no counter is added.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mupnc.daq.channel_map import POLARIMETER_ROLES, Channel, ChannelMap

POLARIMETER_KEYS = (
    "enabled", "analysing_power", "polarization_minus", "acceptance", "balance",
    "background", "dead_time", "depolarization", "fault_at", "fault_polarization_minus",
)  # fmt: skip
"""Keys of the ``[polarimeter]`` table of a run file."""
COUNTERS = (("pol_fwd", "pol_forward"), ("pol_bwd", "pol_backward"))
"""(name, role) of the counters an enabled polarimeter adds to a channel map."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PolarimeterConfig:
    """The ``[polarimeter]`` section (module docstring): ``analysing_power`` in (0, 1], the
    ``-`` state's signed ``polarization_minus`` (None: minus the run's polarization),
    ``acceptance`` (positrons counted per muon per counter), ``background`` (counts/s per
    counter), ``dead_time`` (s), ``depolarization`` (fraction per hour), ``fault_at`` (s
    from the run start; None: no fault) and ``fault_polarization_minus``."""

    enabled: bool = False
    analysing_power: float = 1 / 3
    polarization_minus: float | None = None
    acceptance: float = 1e-3
    balance: float = 1.0
    background: float = 0.0
    dead_time: float = 0.0
    depolarization: float = 0.0
    fault_at: float | None = None
    fault_polarization_minus: float | None = None

    def problem(self) -> str | None:
        """Why the section cannot run (one line starting with the key), or None."""
        if not isinstance(self.enabled, bool):
            return f"enabled must be true or false, got {self.enabled!r}"
        if not _number(self.analysing_power) or not 0 < self.analysing_power <= 1:
            return f"analysing_power must lie in (0, 1], got {self.analysing_power!r}"
        for key in ("polarization_minus", "fault_polarization_minus"):
            value = getattr(self, key)
            if value is not None and (not _number(value) or not -1 <= value <= 1):
                return f"{key} must lie in [-1, 1], got {value!r}"
        if not _number(self.acceptance) or not 0 < self.acceptance <= 1:
            return f"acceptance must lie in (0, 1], got {self.acceptance!r}"
        if not _number(self.balance) or not 0.1 <= self.balance <= 10:
            return f"balance must lie in [0.1, 10], got {self.balance!r}"
        for key, unit in (("background", "counts/s"), ("dead_time", "s"), ("depolarization", "/h")):
            value = getattr(self, key)
            if not _number(value) or value < 0:
                return f"{key} must be a number >= 0 {unit}, got {value!r}"
        if self.fault_at is not None and (not _number(self.fault_at) or self.fault_at < 0):
            return f"fault_at must be a time >= 0 s, got {self.fault_at!r}"
        if (self.fault_at is None) != (self.fault_polarization_minus is None):
            return "fault_at and fault_polarization_minus go together (the fault's time and value)"
        return None

    def channel_map(self, channel_map: ChannelMap) -> ChannelMap:
        """``channel_map`` with the two counters when enabled and it has none."""
        if not self.enabled or any(c.role in POLARIMETER_ROLES for c in channel_map.channels):
            return channel_map
        added = tuple(
            Channel(name, role, self.acceptance, analysing_power=self.analysing_power)
            for name, role in COUNTERS
        )
        return dataclasses.replace(channel_map, channels=channel_map.channels + added)


class SimulatedPolarimeter:
    """The spin of each window and the polarimeter counters' counts (module docstring)."""

    def __init__(self, config: PolarimeterConfig, polarization: float, detectors: ChannelMap):
        self.config = config
        self.polarization = polarization
        roles = [c.role for c in detectors.channels]
        self.forward = [i for i, r in enumerate(roles) if r == "pol_forward"]
        self.backward = [i for i, r in enumerate(roles) if r == "pol_backward"]
        """Columns of the counters among the detector channels."""

    def minus(self, seconds: np.ndarray) -> np.ndarray:
        """The ``-`` state's signed polarization at ``seconds`` into the run (before the
        depolarization)."""
        c = self.config
        base = -self.polarization if c.polarization_minus is None else c.polarization_minus
        minus = np.full(seconds.shape, float(base))
        if c.fault_at is not None and c.fault_polarization_minus is not None:
            minus[seconds >= c.fault_at] = c.fault_polarization_minus
        return minus

    def spin(self, spin: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """The signed polarization of windows whose ideal spin is ``spin`` (``+-P`` times
        the reversal's own factor: a ramp, a kick's turns): the ``-`` side scaled to
        ``|P-| / P`` and its sign to that of ``P-``, both states depolarized."""
        c = self.config
        if c.polarization_minus is None and c.fault_at is None and not c.depolarization:
            return spin
        scale = -self.minus(seconds) / self.polarization
        out = np.where(spin < 0, spin * scale, spin)
        if c.depolarization:
            out = out * np.clip(1.0 - c.depolarization * seconds / 3600.0, 0.0, None)
        return out

    def asymmetries(self, channel_asymmetry: np.ndarray) -> np.ndarray:
        """The detector channels' asymmetries with the counters' ``+-a`` in place."""
        out = channel_asymmetry.copy()
        out[self.forward] = self.config.analysing_power
        out[self.backward] = -self.config.analysing_power
        return out

    def efficiencies(self, efficiency: np.ndarray) -> np.ndarray:
        """The detector channels' efficiencies with the backward counters' ``balance``."""
        out = efficiency.copy()
        out[self.backward] *= self.config.balance
        return out

    def counted(self, counts: np.ndarray, gate: float, rng: np.random.Generator) -> np.ndarray:
        """Detector counts ``(n, detectors)`` with the counters' background added and their
        dead time applied (in place; no draws without background)."""
        c = self.config
        columns = self.forward + self.backward
        if not columns or (not c.background and not c.dead_time):
            return counts
        hits = counts[:, columns]
        if c.background:
            hits = hits + rng.poisson(c.background * gate, hits.shape)
        if c.dead_time:
            hits = np.rint(hits / (1.0 + hits * c.dead_time / gate)).astype(np.int64)
        counts[:, columns] = hits
        return counts
