"""Beam modulation ("dithering"): coils that move the beam by known amounts (physics truth).

In dedicated periods the coils are driven one after the other, each for ``coil_time``
seconds; the beam position monitors and the detectors respond, which gives the detectors'
sensitivities to the beam independently of the regression (JLab's beam modulation,
``QwBeamMod``).  The schedule is a function of the window's time ``t = seq / window_rate``
alone, so the same windows are modulated however they are cut into blocks:

* a *cycle* starts at ``t = period, 2 period, ...`` (none at the start of the run) and
  lasts ``n_coils * coil_time`` (< ``period``); its windows are flagged
  :data:`mupnc.daq.blocks.FLAG_MODULATION`;
* inside a cycle coil ``k`` (0-based, in the order of ``response``) is driven from
  ``t_k = cycle start + k * coil_time`` for ``coil_time``, the others are at zero;
* its current (mA): ``sine``: ``I = A sin(2 pi f (t - t_k))``; ``step``: ``+A`` over the
  first half of ``coil_time``, ``-A`` over the second.

The beam variables at the target (:data:`mupnc.daq.beamline.BEAM_VARIABLES`, in their
units: x, y mm; xp, yp mrad; dpp a fraction) move by ``sum_coil I_coil * response[coil]``;
a ``stuck`` coil's readback shows its drive but the beam does not follow (a broken coil).
A coil channel of the channel map (role ``coil``, matched by name) reports the current as
``round(I / mA_per_count)``; 0 outside the cycles and when modulation is off.  No random
numbers are drawn.

Defaults (:data:`DEFAULT_RESPONSE`): five coils, each moving one variable most and another
one too (non-diagonal, well conditioned).  At 100 mA: coil_1 100 um in x and 20 urad in
x', coil_2 the same in y, coil_3 50 urad in x' and 50 um in x, coil_4 the same in y,
coil_5 1e-4 in dp/p and 50 um in x.  Every non-zero entry is at least ~40 times the
statistical error (``jitter / (sqrt(480) * A / sqrt(2))``) with which the shipped monitors
measure it in one 2 s coil period at 240 Hz against the default beam jitter (20 um, 5 urad,
1e-5 per window): each response within 0.7-2.6 %.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from mupnc.daq.beamline import BEAM_VARIABLES
from mupnc.daq.channel_map import ChannelMap

SHAPES = ("sine", "step")
DEFAULT_RESPONSE: dict[str, dict[str, float]] = {
    "coil_1": {"x": 1e-3, "xp": 2e-4},
    "coil_2": {"y": 1e-3, "yp": 2e-4},
    "coil_3": {"xp": 5e-4, "x": 5e-4},
    "coil_4": {"yp": 5e-4, "y": 5e-4},
    "coil_5": {"dpp": 1e-6, "x": 5e-4},
}
"""coil -> {beam variable: change per mA (mm, mrad or dp/p fraction per mA)}."""
MODULATION_KEYS = ("enabled", "period", "coil_time", "shape", "frequency", "amplitude", "stuck")
"""Keys of the ``[modulation]`` table (besides the ``[modulation.response]`` table)."""


def default_response() -> dict[str, dict[str, float]]:
    """A copy of :data:`DEFAULT_RESPONSE`."""
    return copy.deepcopy(DEFAULT_RESPONSE)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ModulationConfig:
    """The ``[modulation]`` section (module docstring): times in s, ``frequency`` in Hz,
    ``amplitude`` in mA, ``response`` coil -> {variable: change per mA} (the coils of the
    cycle, in order; a variable not named does not move), ``stuck`` coils that do not move
    the beam."""

    enabled: bool = False
    period: float = 60.0
    coil_time: float = 2.0
    shape: str = "sine"
    frequency: float = 5.0
    amplitude: float = 100.0
    response: dict[str, dict[str, float]] = field(default_factory=default_response)
    stuck: tuple[str, ...] = ()

    @property
    def coils(self) -> tuple[str, ...]:
        """The coils in the order a cycle drives them."""
        return tuple(self.response)

    @property
    def cycle_time(self) -> float:
        """Length of a cycle, s: the coils one after the other."""
        return len(self.response) * self.coil_time

    def matrix(self) -> np.ndarray:
        """``(coils, variables)``: each coil's response per mA (stuck coils included)."""
        return np.array(
            [[self.response[c].get(v, 0.0) for v in BEAM_VARIABLES] for c in self.coils],
            dtype=np.float64,
        ).reshape(len(self.coils), len(BEAM_VARIABLES))

    def problem(self, channel_map: ChannelMap | None = None) -> str | None:
        """What makes this section unusable (None if nothing), in one line starting with the
        key; with ``channel_map`` and modulation enabled, each coil of ``response`` must be a
        channel of role ``coil`` in it."""
        if not isinstance(self.enabled, bool):
            return f"enabled must be true or false, got {self.enabled!r}"
        for key in ("period", "coil_time", "frequency", "amplitude"):
            value = getattr(self, key)
            if not _number(value) or value <= 0:
                unit = {"frequency": "Hz", "amplitude": "mA"}.get(key, "s")
                return f"{key} must be a number > 0 {unit}, got {value!r}"
        if self.shape not in SHAPES:
            return f"shape must be one of {SHAPES}, got {self.shape!r}"
        if not isinstance(self.response, dict) or not self.response:
            return "response must name at least one coil ({coil = {x = ..., ...}})"
        for coil, entry in self.response.items():
            if not isinstance(coil, str) or not coil:
                return f"response: a coil name must be a non-empty string, got {coil!r}"
            if not isinstance(entry, dict):
                return f"response.{coil} must be a table {{ x = 1e-3, ... }}, got {entry!r}"
            for variable, value in entry.items():
                if variable not in BEAM_VARIABLES:
                    known = ", ".join(BEAM_VARIABLES)
                    return f"response.{coil}: unknown beam variable {variable!r} (known: {known})"
                if not _number(value):
                    return f"response.{coil}: {variable} must be a number per mA, got {value!r}"
        if self.cycle_time >= self.period:
            return (
                f"coil_time: a cycle of {len(self.response)} coils x {self.coil_time:g} s ="
                f" {self.cycle_time:g} s must be shorter than the period {self.period:g} s"
            )
        if not isinstance(self.stuck, tuple | list):
            return f"stuck must be a list of coil names, got {self.stuck!r}"
        for coil in self.stuck:
            if coil not in self.response:
                known = ", ".join(self.coils)
                return f"stuck: unknown coil {coil!r} (known: {known})"
        if channel_map is not None and self.enabled:
            roles = {c.name: c.role for c in channel_map.channels}
            for coil in self.coils:
                if roles.get(coil) != "coil":
                    return (
                        f"response.{coil}: the channel map has no coil channel {coil!r}"
                        " (role 'coil') to read its current"
                    )
        return None

    def schedule(self, seq: np.ndarray, window_rate: float) -> tuple[np.ndarray, np.ndarray]:
        """For windows ``seq``: inside a cycle (``(n,)`` bool) and the coil currents
        ``(n, coils)`` in mA (0 for coils not driven); whether enabled or not."""
        n_coils = len(self.response)
        t = np.asarray(seq, dtype=np.int64) / window_rate
        cycle, u = np.divmod(t, self.period)
        coil = np.floor(u / self.coil_time).astype(np.int64)
        inside = (cycle >= 1) & (coil < n_coils)
        tau = u - coil * self.coil_time
        if self.shape == "sine":
            value = self.amplitude * np.sin(2 * np.pi * self.frequency * tau)
        else:
            value = np.where(tau < 0.5 * self.coil_time, self.amplitude, -self.amplitude)
        currents = np.zeros((t.size, n_coils))
        rows = np.flatnonzero(inside)
        currents[rows, coil[rows]] = value[rows]
        return inside, currents


class BeamModulation:
    """A run's modulation: its schedule, how the beam follows it and the coil words."""

    def __init__(self, config: ModulationConfig, channel_map: ChannelMap, window_rate: float):
        self.config = config
        self.window_rate = window_rate
        coils = config.coils
        matrix = config.matrix()
        moving = [i for i, c in enumerate(coils) if c not in config.stuck]
        self._moving = [(i, matrix[i]) for i in moving]
        self.coil_columns = channel_map.coils
        """Columns of the channel map's coil channels."""
        self._readback = [
            (j, coils.index(channel_map.channels[column].name), channel_map.channels[column])
            for j, column in enumerate(self.coil_columns)
            if channel_map.channels[column].name in coils
        ]

    def schedule(self, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inside a cycle ``(n,)`` and coil currents ``(n, coils)`` mA; nothing when off."""
        if not self.config.enabled:
            return np.zeros(seq.size, dtype=bool), np.zeros((seq.size, len(self.config.coils)))
        return self.config.schedule(seq, self.window_rate)

    def moved(self, beam: np.ndarray, currents: np.ndarray) -> np.ndarray:
        """The beam variables ``(n, 5)`` with every working coil's push added (in a fixed
        order, so the same bits however windows are cut into blocks); ``beam`` itself when
        modulation is off."""
        if not self.config.enabled:
            return beam
        out = beam.copy()
        for i, response in self._moving:
            out += currents[:, i, None] * response
        return out

    def words(self, currents: np.ndarray) -> np.ndarray:
        """The coil channels' words ``(n, coil channels)``: ``round(I / mA_per_count)``."""
        out = np.zeros((currents.shape[0], len(self.coil_columns)), dtype=np.int64)
        if self.config.enabled:
            for j, i, channel in self._readback:
                out[:, j] = np.rint(currents[:, i] / channel.ma_per_count).astype(np.int64)
        return out
