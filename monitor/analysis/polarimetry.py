"""The beam polarization measured by the muon polarimeter (pure).

The polarimeter's decay-positron counters (channel roles ``pol_forward`` and
``pol_backward``, :mod:`mupnc.daq.channel_map`) count, over the good patterns of each spin
state ``s`` (helicity +1: ``+``), ``F_s = N_s e_F (1 + a P_s)`` and
``B_s = N_s e_B (1 - a P_s)``, with ``a`` the counters' analysing power (the channel map's)
and ``P_s`` the signed longitudinal polarization of the state (``P+ > 0 > P-`` for a flip).

* **Per state** (needs the balance ``b = e_F / e_B``): ``A_s = (F_s - b B_s) / (F_s + b B_s)
  = a P_s`` (the muSR asymmetry with detector balance; Mantid's ``AsymmetryCalc``), counting
  error ``sigma_A^2 = 4 b^2 F B (F + B) / (F + b B)^4``.  The balance is the **configured
  reference**: the ratio of the counters' acceptances in the channel map (a calibration the
  facility measures; the simulator's ``balance`` is how far the truth is off it).  The
  balance the run's counts give under the assumption of a complete flip, ``sqrt(F+ F- /
  (B+ B-))``, is reported beside it (``balance_measured``): a balance off the map's, or an
  incomplete flip, shows as a difference.
* **Effective polarization** (no balance needed): the cross ratio of both states,
  ``r = sqrt(F+ B- / (F- B+))``, ``a P_eff = (r - 1) / (r + 1)`` (= ``a P`` exactly for a
  complete flip; ``a (P+ - P-) / 2`` to first order otherwise), with
  ``sigma(ln r)^2 = (1/F+ + 1/F- + 1/B+ + 1/B-) / 4``.  It is what separates the two spin
  states in every detector's asymmetry, ``A_meas = A P_eff``, so the physics asymmetry is
  ``A_meas / P_eff``.
* **Flip quality**: ``q = |P+| - |P-|`` (0 for a complete flip; > 0 when the ``-`` state has
  less), its error the states' in quadrature (their counts are independent; the configured
  balance carries no statistical error), and ``q / sigma_q``.

Undefined (no count in a counter of a state, no polarimeter) is NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.daq.channel_map import ChannelMap
from mupnc.monitor.analysis.statistics import Measurement

PLUS, MINUS = 0, 1
"""Spin-state slots of the counts (helicity +1, -1), as in the accumulator."""


@dataclass(frozen=True)
class Polarimeter:
    """What the analysis needs of the channel map's polarimeter: the counters' columns among
    the detector channels, their analysing power and the configured balance ``e_F / e_B``
    (ratio of the counters' summed acceptances)."""

    forward: tuple[int, ...]
    backward: tuple[int, ...]
    analysing_power: float
    balance: float

    @classmethod
    def of(cls, detectors: ChannelMap) -> Polarimeter | None:
        """The polarimeter of a detector map (None: it has no counters)."""
        channels = detectors.channels
        forward = tuple(i for i, c in enumerate(channels) if c.role == "pol_forward")
        backward = tuple(i for i, c in enumerate(channels) if c.role == "pol_backward")
        if not forward or not backward:
            return None
        power = channels[forward[0]].analysing_power
        accepted = [sum(channels[i].acceptance for i in side) for side in (forward, backward)]
        balance = accepted[0] / accepted[1] if accepted[1] > 0 else math.nan
        return cls(forward, backward, float(power or math.nan), balance)


@dataclass(frozen=True)
class Polarization:
    """One minirun's (or the run's) polarization: ``plus`` and ``minus`` (signed, per state,
    with the configured balance), ``effective`` (the cross ratio's, balance-free),
    ``flip_quality`` ``|P+| - |P-|`` and its ``flip_sigma`` (``q / sigma_q``), the
    ``balance_measured`` under a complete flip, and the counters' ``forward`` and
    ``backward`` counts (both states)."""

    plus: Measurement
    minus: Measurement
    effective: Measurement
    flip_quality: Measurement
    flip_sigma: float
    balance_measured: float
    forward: int
    backward: int


def _state(f: float, b: float, balance: float, power: float, n: int) -> Measurement:
    if not (f > 0 and b > 0):
        return Measurement(math.nan, math.nan, n)
    denominator = f + balance * b
    asymmetry = (f - balance * b) / denominator
    error = 2 * balance * math.sqrt(f * b * (f + b)) / denominator**2
    return Measurement(asymmetry / power, error / power, n)


def measure(counts: np.ndarray, polarimeter: Polarimeter, patterns: int) -> Polarization:
    """The polarization from the good-pattern counts ``(2, detectors)`` by spin state
    (slots :data:`PLUS`, :data:`MINUS`) over ``patterns`` good patterns (module
    docstring)."""
    f = counts[:, list(polarimeter.forward)].sum(axis=1).astype(np.float64)
    b = counts[:, list(polarimeter.backward)].sum(axis=1).astype(np.float64)
    a, balance, n = polarimeter.analysing_power, polarimeter.balance, patterns
    plus = _state(f[PLUS], b[PLUS], balance, a, n)
    minus = _state(f[MINUS], b[MINUS], balance, a, n)
    nan = Measurement(math.nan, math.nan, n)
    effective, measured_balance = nan, math.nan
    if (f > 0).all() and (b > 0).all():
        r = math.sqrt(f[PLUS] * b[MINUS] / (f[MINUS] * b[PLUS]))
        spread = 0.5 * math.sqrt((1 / f + 1 / b).sum())
        effective = Measurement((r - 1) / (r + 1) / a, 2 * r / (r + 1) ** 2 * spread / a, n)
        measured_balance = math.sqrt(f[PLUS] * f[MINUS] / (b[PLUS] * b[MINUS]))
    quality = Measurement(
        abs(plus.value) - abs(minus.value), math.hypot(plus.error, minus.error), n
    )
    sigma = quality.value / quality.error if quality.error > 0 else math.nan
    return Polarization(
        plus, minus, effective, quality, sigma, measured_balance, int(f.sum()), int(b.sum())
    )


def with_scale_error(physics: Measurement, polarization: Measurement) -> Measurement:
    """A physics asymmetry already divided by ``polarization`` with that division's error
    added: ``|A| sigma_P / P`` in quadrature (the polarimeter's counts are not the
    detectors': independent)."""
    scale = abs(physics.value) * polarization.error / abs(polarization.value)
    return Measurement(physics.value, math.hypot(physics.error, scale), physics.n)
