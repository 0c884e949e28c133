"""The simulated beam line: beam variables at the target per window, what the beam position
monitors read, and how the detector yields follow the beam.

Per window ``w`` (actual helicity ``h``, time ``t = seq / window_rate``), for every beam
variable ``v`` of :data:`mupnc.daq.beamline.BEAM_VARIABLES` (x, y in mm; xp, yp in mrad;
dpp a fraction)::

    v[w] = h * hc_difference + jitter * N(0,1) + drift(t)

``hc_difference`` is half the difference between the two spin states' beams (``(v+ - v-)/2``,
the convention of the measured differences).  ``drift`` is slow: three sinusoids of random
phase with periods ``drift_time * (1, 1.7, 2.9)``, of rms ``drift`` together (a function of
time alone, so the same windows get the same drift however they are cut into blocks).
A beam position monitor reads ``v`` along its straight line (:mod:`mupnc.daq.beamline`)
plus ``resolution * N(0,1)``, rounded to its unit.  A detector channel's expected counts
are multiplied by ``1 + sum_v sensitivity[v] * v[w]`` (sensitivity: fractional yield change
per unit of the variable).

Defaults (:func:`default_hc_difference`): the slow spin rotator (an E x B Wien filter) and
the ring kick make the two spin states different beams, so their helicity-correlated
differences are microns; the fast source's are nanometres.  Sensitivities are 0 unless
configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mupnc.daq.beamline import BEAM_VARIABLES, BeamLine
from mupnc.daq.channel_map import NOT_DETECTORS, ChannelMap

DEFAULT_JITTER = {"x": 0.02, "y": 0.02, "xp": 0.005, "yp": 0.005, "dpp": 1e-5}
"""Beam jitter per window at the target: 20 um, 5 urad, 1e-5 in dp/p."""
HC_DIFFERENCE = {
    "fast": {"x": 1e-6, "y": -1e-6, "xp": 1e-7, "yp": 0.0, "dpp": 1e-9},
    "slow": {"x": 2e-3, "y": -1e-3, "xp": 2e-4, "yp": -1e-4, "dpp": 1e-7},
    "kick": {"x": 5e-3, "y": 0.0, "xp": 1e-3, "yp": 0.0, "dpp": 5e-7},
}
"""Default helicity-correlated differences (``(v+ - v-)/2``) by reversal scheme: fast 1 nm,
slow 2 um, kick 5 um in x (the kicked beam leaves on another orbit)."""
DRIFT_PERIODS = (1.0, 1.7, 2.9)
SENSITIVITY_DEFAULT = "default"
"""Key of ``[beamline.sensitivity]`` for every detector channel without an entry."""
_WHAT = {"bpm": "a beam position monitor", "coil": "a modulation coil"}
"""The channels that are not detectors, in words."""


@dataclass(frozen=True)
class BeamVariable:
    """One beam variable's behaviour (units of the variable; ``drift_time`` in s)."""

    jitter: float
    hc_difference: float
    drift: float = 0.0
    drift_time: float = 60.0


@dataclass(frozen=True)
class BeamlineConfig:
    """The ``[beamline]`` section: per variable behaviour (missing ones take the defaults
    for the scheme) and per-channel sensitivities (``{channel or "default": {variable:
    fraction per unit}}``)."""

    variables: dict[str, dict[str, float]] = field(default_factory=dict)
    sensitivity: dict[str, dict[str, float]] = field(default_factory=dict)

    def variable(self, name: str, scheme: str) -> BeamVariable:
        given = self.variables.get(name, {})
        return BeamVariable(
            jitter=given.get("jitter", DEFAULT_JITTER[name]),
            hc_difference=given.get("hc_difference", HC_DIFFERENCE[scheme][name]),
            drift=given.get("drift", 0.0),
            drift_time=given.get("drift_time", 60.0),
        )

    def sensitivities(self, detectors: ChannelMap) -> np.ndarray:
        """``(variables, detector channels)``: fractional yield change per unit."""
        default = self.sensitivity.get(SENSITIVITY_DEFAULT, {})
        out = np.zeros((len(BEAM_VARIABLES), len(detectors.channels)))
        for j, channel in enumerate(detectors.channels):
            own = self.sensitivity.get(channel.name, default)
            for i, name in enumerate(BEAM_VARIABLES):
                out[i, j] = own.get(name, 0.0)
        return out

    def problem(self, channel_map: ChannelMap) -> str | None:
        """What makes this section unusable with ``channel_map`` (None if nothing): a
        sensitivity for a channel the map does not have, or for one that is not a detector
        (a beam position monitor or a modulation coil)."""
        names = {c.name: c.role for c in channel_map.channels}
        for channel in self.sensitivity:
            if channel == SENSITIVITY_DEFAULT:
                continue
            if channel not in names:
                return f"sensitivity.{channel}: the channel map has no channel {channel!r}"
            if names[channel] in NOT_DETECTORS:
                return f"sensitivity.{channel}: {channel!r} is {_WHAT[names[channel]]}"
        return None


class SimulatedBeamline:
    """Beam variables, monitor words and yield factors for consecutive windows (its own
    random stream)."""

    def __init__(
        self,
        config: BeamlineConfig,
        channel_map: ChannelMap,
        scheme: str,
        window_rate: float,
        rng: np.random.Generator,
    ) -> None:
        self.variables = [config.variable(name, scheme) for name in BEAM_VARIABLES]
        self.line = BeamLine.of(channel_map)
        self.sensitivity = config.sensitivities(channel_map.detectors())
        self.window_rate = window_rate
        self._rng = rng
        self._drift_phase = rng.uniform(0, 2 * np.pi, (len(BEAM_VARIABLES), len(DRIFT_PERIODS)))

    def beam(
        self,
        seq: np.ndarray,
        helicity: np.ndarray,
        steering: dict[str, np.ndarray | float] | None = None,
    ) -> np.ndarray:
        """Beam variables at the target, ``(n, 5)`` in :data:`BEAM_VARIABLES` order;
        ``steering``: helicity-correlated differences added by the source's actuators
        (variable -> ``(v+ - v-)/2`` per window or one for all, the variable's unit)."""
        t = seq / self.window_rate
        out = self._rng.standard_normal((seq.size, len(self.variables)))
        steering = steering or {}
        for i, v in enumerate(self.variables):
            out[:, i] *= v.jitter
            out[:, i] += helicity * (v.hc_difference + steering.get(BEAM_VARIABLES[i], 0.0))
            if v.drift:
                waves = [
                    np.sin(2 * np.pi * t / (v.drift_time * period) + phase)
                    for period, phase in zip(DRIFT_PERIODS, self._drift_phase[i], strict=True)
                ]
                out[:, i] += v.drift * np.sqrt(2.0 / len(waves)) * np.sum(waves, axis=0)
        return out

    def yield_factor(self, beam: np.ndarray) -> np.ndarray:
        """``1 + sum_v sensitivity * v`` per window and detector channel, ``(n, c)``."""
        return 1.0 + beam @ self.sensitivity

    def monitor_words(self, beam: np.ndarray) -> np.ndarray:
        """What the beam position monitors report, ``(n, monitors)`` integer words."""
        line = self.line
        readings = line.readings_mm(dict(zip(BEAM_VARIABLES, beam.T, strict=True)))
        readings += line.resolution_mm * self._rng.standard_normal(readings.shape)
        return np.rint(readings / line.mm_per_count).astype(np.int64)
