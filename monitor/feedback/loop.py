"""Feedback loops on helicity-correlated beam differences (pure).

A loop measures its input over windows of ``patterns`` good patterns and, after each,
corrects the actuator that drives it by the integral law of SLAC E158 and JLab's
``QwHelicityCorrelatedFeedback``::

    setpoint_new = setpoint_old - gain * input / slope

where ``slope`` is the loop's calibration of the actuator (input change per setpoint unit;
the true response may differ and drift: any ``0 < gain * true / slope < 2`` converges).
It acts only on a precise enough measurement (``error <= max_error``) outside the dead
band (``|input| > dead_band``), clamps the setpoint to ``±clamp`` (the action is then
*saturated*), and in ``dry_run`` computes every action without applying it.

Loops and their units (inputs as a shift reads them, setpoints as the actuators take them,
:mod:`mupnc.sim.actuators`):

* ``charge``: the charge asymmetry (ppm) -> the intensity-asymmetry setpoint (ppm);
* ``position``: the position differences ``(x+ - x-)/2`` and ``(y+ - y-)/2`` at the target
  (um) -> the ``x`` and ``y`` position-difference setpoints (um), one action each.

A loop whose input stays beyond three of its errors for ``converge_actions`` actions in a
row has not converged (:attr:`FeedbackLoop.unconverged`; an alarm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.statistics import RunningStats

LOOPS = ("charge", "position")
LOOP_ACTUATORS = {"charge": ("charge",), "position": ("x", "y")}
"""Loop -> the actuators it drives, in the order of its input columns."""
INPUT_UNITS = {"charge": "ppm", "position": "um"}
INPUT_SCALE = {"charge": 1e6, "position": 1e3}
"""Measured input (fraction; mm) -> the loop's input unit (ppm; um)."""
SETPOINT_UNITS = {"charge": "ppm", "x": "um", "y": "um"}
MODES = ("off", "dry_run", "on")
"""off: the loop does nothing; dry_run: it decides and records, but writes nothing."""


@dataclass(frozen=True)
class LoopSettings:
    """A loop's parameters (units: :data:`INPUT_UNITS` for ``max_error`` and ``dead_band``,
    the actuator's for ``clamp``; ``slope`` in input unit per setpoint unit)."""

    mode: str = "off"
    gain: float = 1.0
    patterns: int = 10_000
    max_error: float = 20.0
    dead_band: float = 0.0
    clamp: float = 1000.0
    slope: float = 1.0
    converge_actions: int = 10

    def problem(self, loop: str) -> str | None:
        """What makes these settings unusable (None if nothing), naming the key."""
        unit = INPUT_UNITS[loop]
        checks = (
            (self.mode not in MODES, "mode", f"must be one of {', '.join(MODES)}"),
            (not self.gain > 0, "gain", "must be > 0"),
            (not self.gain <= 2, "gain", "must be <= 2 (beyond it the integral law diverges)"),
            (not self.patterns >= 2, "patterns", "must be >= 2 good patterns"),
            (not self.max_error > 0, "max_error", f"must be > 0 {unit}"),
            (not self.dead_band >= 0, "dead_band", f"must be >= 0 {unit}"),
            (not self.clamp > 0, "clamp", "must be > 0"),
            (not (math.isfinite(self.slope) and self.slope != 0), "slope", "must be non-zero"),
            (not self.converge_actions >= 1, "converge_actions", "must be >= 1"),
        )
        for bad, key, message in checks:
            if bad:
                return f"{key}: {message}, got {getattr(self, key)!r}"
        if self.clamp * abs(self.slope) <= self.dead_band:
            return (
                f"clamp: {self.clamp:g} moves the input by at most"
                f" {self.clamp * abs(self.slope):g} {unit}, not beyond the dead band"
                f" {self.dead_band:g} {unit}"
            )
        return None


DEFAULTS = {
    "charge": LoopSettings(patterns=10_000, max_error=20.0, clamp=2000.0),
    "position": LoopSettings(patterns=50_000, max_error=1.0, clamp=50.0),
}
"""Settings of a loop the run configuration does not mention (JAPAN's: 10k patterns, act
below 20 ppm, for the charge; 50k patterns for the position)."""


def loop_inputs(acc: RunAccumulator, loop: str) -> RunningStats:
    """The run's per-pattern statistics of a loop's inputs so far: the charge asymmetry
    (fraction), or the x and y differences (mm); ``KeyError`` if the run's beam monitors
    do not measure x and y."""
    if loop == "charge":
        return acc.run_stats("charge_asymmetry")
    measured = acc.beamline.variables
    missing = [axis for axis in LOOP_ACTUATORS[loop] if axis not in measured]
    if missing:
        raise KeyError(f"the {loop} loop needs the beam variables {', '.join(missing)} measured")
    stats = acc.run_stats("beam_difference")
    columns = [measured.index(axis) for axis in LOOP_ACTUATORS[loop]]
    return RunningStats(n=stats.n[columns], mean=stats.mean[columns], m2=stats.m2[columns])


@dataclass(frozen=True)
class Action:
    """One decision of a loop on one actuator, after a window of ``patterns`` good
    patterns: the input (``value`` ± ``error``, input unit), the setpoint ``before`` and
    ``after`` (actuator unit), whether it ``acted`` (changed the setpoint; in a dry run the
    change is computed, not applied), ``saturated`` (held at the clamp) and why."""

    loop: str
    actuator: str
    time: float
    patterns: int
    value: float
    error: float
    before: float
    after: float
    acted: bool
    saturated: bool
    dry_run: bool
    reason: str


@dataclass
class FeedbackLoop:
    """A loop's state: its ``setpoints`` (what the actuators were last set to), the input
    totals at the start of the current window, and the ``actions`` applied so far (a dry
    run's are not)."""

    name: str
    settings: LoopSettings
    setpoints: dict[str, float] = field(default_factory=dict)
    actions: int = 0
    unconverged: int = 0
    """Consecutive decisions with the input beyond three of its errors."""
    window_start: RunningStats | None = None

    def __post_init__(self) -> None:
        for actuator in LOOP_ACTUATORS[self.name]:
            self.setpoints.setdefault(actuator, 0.0)

    @property
    def not_converged(self) -> bool:
        return self.unconverged >= self.settings.converge_actions

    def set_mode(self, mode: str) -> None:
        """Switch at run time; a loop switched on starts a fresh window."""
        if mode not in MODES:
            raise ValueError(f"feedback mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != self.settings.mode:
            self.settings = replace(self.settings, mode=mode)
            self.window_start = None
            self.unconverged = 0

    def update(self, totals: RunningStats, time: float) -> list[Action]:
        """Decide on the window since the last decision if it holds ``patterns`` good
        patterns; ``totals``: the run's per-pattern statistics of the loop's inputs so far
        (charge asymmetry, fraction; or the x and y differences, mm)."""
        if self.settings.mode == "off":
            return []
        if self.window_start is None:
            self.window_start = totals
            return []
        window = totals.since(self.window_start)
        patterns = int(window.n.min()) if window.n.size else 0
        if patterns < self.settings.patterns:
            return []
        self.window_start = totals
        scale = INPUT_SCALE[self.name]
        values, errors = window.mean * scale, window.error * scale
        actions = [
            self._decide(actuator, float(v), float(e), patterns, time)
            for actuator, v, e in zip(LOOP_ACTUATORS[self.name], values, errors, strict=True)
        ]
        beyond = any(abs(a.value) > 3 * a.error for a in actions)
        self.unconverged = self.unconverged + 1 if beyond else 0
        if self.settings.mode == "on":
            self.actions += sum(a.acted for a in actions)
            for a in actions:
                self.setpoints[a.actuator] = a.after
        return actions

    def _decide(self, actuator: str, value: float, error: float, n: int, time: float) -> Action:
        s, before = self.settings, self.setpoints[actuator]
        unit = INPUT_UNITS[self.name]
        after, saturated = before, False
        if not (np.isfinite(value) and np.isfinite(error)):
            reason = "input undefined"
        elif error > s.max_error:
            reason = f"error {error:.3g} {unit} above max_error {s.max_error:g} {unit}"
        elif abs(value) <= s.dead_band:
            reason = f"within the dead band ({value:+.3g} {unit}, band ±{s.dead_band:g} {unit})"
        else:
            wanted = before - s.gain * value / s.slope
            after = min(max(wanted, -s.clamp), s.clamp)
            saturated = after != wanted
            reason = f"corrected {value:+.3g} ± {error:.2g} {unit}" + (
                f"; held at the clamp ±{s.clamp:g} {SETPOINT_UNITS[actuator]}" if saturated else ""
            )
        dry = s.mode == "dry_run"
        if dry and after != before:
            reason = "dry run: " + reason
        return Action(
            loop=self.name,
            actuator=actuator,
            time=time,
            patterns=n,
            value=value,
            error=error,
            before=before,
            after=after,
            acted=after != before,
            saturated=saturated,
            dry_run=dry,
            reason=reason,
        )
