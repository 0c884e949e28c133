"""The muon beam: intensity per window, noise, slow drift, trips, charge asymmetry, beam monitor.

Per window ``w`` (helicity gate ``h``, time ``t = seq / window_rate`` since the run start)::

    muons[w] = rate * T_gate * (1 + jitter N(0,1)) * (1 + drift_amplitude sin(2 pi t / period))
               * (1 + h * charge_asymmetry) * (1 if beam_on else trip_residual)
    beam_monitor[w] = muons[w] * (1 + bcm_resolution N(0,1))

``period`` is ``drift_period``.  Beam trips start at random (``trip_rate`` per second of
beam) and last ``trip_duration`` s; during a trip the rate drops to ``trip_residual`` of
nominal (``beam_on`` is the truth).
"""

from __future__ import annotations

import numpy as np

RATE_RANGE = (1e7, 1e11)
"""Muon rates Phi_mu the talk considers, in muons/s."""
MOMENTUM_PRESETS = (29.0, 50.0, 100.0)
"""The talk's central momenta in MeV/c: surface muons (29), ARC muons in flight (~50), 100."""
DEFAULT_MOMENTUM = 29.0
"""MeV/c: surface muons (pi+ decay at rest gives 29.8 MeV/c)."""
MOMENTUM_RANGE = (10.0, 500.0)
"""Beam momenta the simulator accepts, MeV/c.  Below 10 MeV/c (kinetic energy < 0.5 MeV) a
muon stops in the first micrometres of any window; up to 500 MeV/c the physical models of
:mod:`mupnc.sim.alr_model` (elastic scattering off a static nucleus, recoil p/M_A <= 5 % for
carbon, one-photon exchange with a dipole form factor) stay sensible, and the range covers
today's muon beamlines.  Beyond, quasi-elastic and inelastic scattering take over."""


class BeamTrips:
    """Trip state carried from block to block (its own random stream)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._off_until = 0  # first seq with the beam back on

    def beam_on(self, seq: np.ndarray, trips_per_window: float, trip_windows: int) -> np.ndarray:
        """Whether the beam is on in each of the consecutive windows ``seq``."""
        off_until = self._off_until
        on = seq >= off_until
        if trips_per_window > 0:
            candidates = seq[self._rng.random(seq.size) < trips_per_window]
            for start in candidates.tolist():  # one iteration per trip, not per window
                if start >= off_until:
                    off_until = start + trip_windows
                    on &= (seq < start) | (seq >= off_until)
        self._off_until = off_until
        return on


def muons_per_window(
    rng: np.random.Generator,
    seq: np.ndarray,
    helicity: np.ndarray,
    beam_on: np.ndarray,
    *,
    mean: float,
    window_rate: float,
    jitter: float,
    drift_amplitude: float,
    drift_period: float,
    charge_asymmetry: float | np.ndarray,
    trip_residual: float,
) -> np.ndarray:
    """True muons integrated in each window (formula in the module docstring).

    ``mean`` is ``rate * T_gate``.
    """
    muons = mean * (1.0 + jitter * rng.standard_normal(seq.size))
    if drift_amplitude:
        muons *= 1.0 + drift_amplitude * np.sin(2 * np.pi * seq / (window_rate * drift_period))
    muons *= 1.0 + helicity * charge_asymmetry
    return np.where(beam_on, muons, muons * trip_residual)
