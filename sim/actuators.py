"""Helicity-correlated actuators at the muon source (physics truth).

What a feedback loop turns to drive a helicity-correlated beam difference to zero:

* ``charge``: the intensity-asymmetry actuator (JLab's "IA" Pockels-cell voltage), setpoint
  in ppm; it adds ``slope * setpoint`` ppm to the beam's charge asymmetry
  ``(N+ - N-)/(N+ + N-)``.
* ``x``, ``y``: position-difference actuators (a helicity-correlated steering of the
  source), setpoints in um; each adds ``slope * setpoint`` um to the helicity-correlated
  difference ``(v+ - v-)/2`` of that beam variable at the target.

Each one applies its setpoint with a small slow drift of its response, ``slope * (1 +
drift * sin(2 pi t / drift_time + phase))``, and a per-window noise of relative rms
``noise`` (its own random stream), so a loop sees a response that is never exactly the
calibrated one.  Setpoints beyond ``limit`` are refused, as the hardware would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ACTUATORS = ("charge", "x", "y")
"""Actuator names: the charge asymmetry and the horizontal and vertical position
differences."""
SETPOINT_UNITS = {"charge": "ppm", "x": "um", "y": "um"}
EFFECT_SCALE = {"charge": 1e-6, "x": 1e-3, "y": 1e-3}
"""Setpoint unit -> the effect's unit: ppm -> fraction (charge asymmetry), um -> mm (the
beam variables' unit)."""
DEFAULT_LIMIT = {"charge": 5000.0, "x": 100.0, "y": 100.0}
"""|setpoint| the hardware accepts: 5000 ppm, 100 um."""


@dataclass(frozen=True)
class Actuator:
    """One actuator's response: ``slope`` (effect per setpoint unit: ppm/ppm, um/um),
    ``limit`` (setpoint unit), ``noise`` (relative rms per window), ``drift`` (relative
    amplitude of the slope's slow drift) over ``drift_time`` (s)."""

    slope: float = 1.0
    limit: float = 0.0
    noise: float = 0.01
    drift: float = 0.005
    drift_time: float = 3600.0

    def problem(self, name: str) -> str | None:
        """What makes this actuator unusable (None if nothing); names the key."""
        if not math.isfinite(self.slope) or self.slope == 0:
            return f"{name}.slope must be a finite non-zero number, got {self.slope!r}"
        if not self.limit > 0:
            return f"{name}.limit must be > 0 {SETPOINT_UNITS[name]}, got {self.limit!r}"
        if not 0 <= self.noise <= 0.5:
            return f"{name}.noise must lie in [0, 0.5], got {self.noise!r}"
        if not 0 <= self.drift <= 0.5:
            return f"{name}.drift must lie in [0, 0.5], got {self.drift!r}"
        if not self.drift_time > 0:
            return f"{name}.drift_time must be > 0 s, got {self.drift_time!r}"
        return None


ACTUATOR_KEYS = ("slope", "limit", "noise", "drift", "drift_time")


@dataclass(frozen=True)
class ActuatorsConfig:
    """The ``[actuators.NAME]`` tables (missing keys and actuators take the defaults)."""

    given: dict[str, dict[str, float]] = field(default_factory=dict)

    def actuator(self, name: str) -> Actuator:
        own = self.given.get(name, {})
        return Actuator(**({"limit": DEFAULT_LIMIT[name]} | own))

    def problem(self) -> str | None:
        for name, keys in self.given.items():
            if name not in ACTUATORS:
                return f"{name}: unknown actuator (known: {', '.join(ACTUATORS)})"
            for key in keys:
                if key not in ACTUATOR_KEYS:
                    return f"{name}.{key}: unknown key (known: {', '.join(ACTUATOR_KEYS)})"
            problem = self.actuator(name).problem(name)
            if problem:
                return problem
        return None


class ActuatorLimitError(ValueError):
    """A setpoint beyond its actuator's limit."""


class HelicityActuators:
    """The actuators' setpoints (0 at the start) and their effect on consecutive windows."""

    def __init__(
        self, config: ActuatorsConfig, window_rate: float, rng: np.random.Generator
    ) -> None:
        self.actuators = {name: config.actuator(name) for name in ACTUATORS}
        self.setpoints = dict.fromkeys(ACTUATORS, 0.0)
        self.window_rate = window_rate
        self._rng = rng
        self._phase = dict(zip(ACTUATORS, rng.uniform(0, 2 * np.pi, len(ACTUATORS)), strict=True))

    def set(self, name: str, setpoint: float) -> None:
        """A new setpoint (its unit, :data:`SETPOINT_UNITS`) from the next block;
        :class:`ActuatorLimitError` beyond the limit."""
        limit = self.actuators[name].limit
        if not abs(setpoint) <= limit:
            unit = SETPOINT_UNITS[name]
            raise ActuatorLimitError(
                f"{name} setpoint {setpoint!r} {unit} beyond its limit ±{limit:g} {unit}"
            )
        self.setpoints[name] = float(setpoint)

    def effect(self, name: str, seq: np.ndarray) -> np.ndarray | float:
        """The actuator's effect in windows ``seq``: a charge asymmetry (fraction) or a
        position difference (mm); 0.0 (no random draw) while its setpoint is 0."""
        setpoint = self.setpoints[name]
        if setpoint == 0.0:
            return 0.0
        a = self.actuators[name]
        t = seq / self.window_rate
        slope = a.slope * (1.0 + a.drift * np.sin(2 * np.pi * t / a.drift_time + self._phase[name]))
        noise = 1.0 + a.noise * self._rng.standard_normal(seq.size)
        return EFFECT_SCALE[name] * setpoint * slope * noise
