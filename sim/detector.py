"""Detector physics: the parity-violating asymmetry each channel of the channel map sees.

Conventions (helicity and roles in :mod:`mupnc.daq.helicity`, :mod:`mupnc.daq.channel_map`).
The mean count of channel ``c`` in a window with signed longitudinal beam polarization ``P_L`` is::

    mu[c] = muons * acceptance[c] * efficiency[c] * (1 + P_L * channel_asymmetry[c])
    channel_asymmetry[c] = analyzing_sign[c] * A[c] * signal_fraction

* ``scatter`` channels (A_LR, muon scattering): ``analyzing_sign = +1`` and
  ``A[c] = A0 * shape(cos_theta[c])`` with the shapes of :func:`alr_shape`: ``flat`` (1),
  ``sm`` (``1 - cos_theta``: A_LR ~ G_F Q^2 / (4 pi alpha) grows with Q^2 = 2 p^2 (1 - cos
  theta)) and ``np`` (``2 (1 - cos_theta) / (2 - cos_theta)``: a light mediator with
  m_V^2 equal to Q^2 at 90 deg, saturating at large angles).  Every shape is 1 at
  cos_theta = 0, so ``A0`` is the asymmetry at 90 deg; a channel without ``cos_theta``
  gets ``A0``.
* ``forward`` / ``backward`` (A_FB, 2S->1S gamma): ``analyzing_sign = -1`` / ``+1``,
  ``A[c] = A_FB`` (A_FB counts gammas at theta > pi/2 from the spin positively and the
  forward detector sees theta < pi/2 for helicity +1).  ``A_FB = 680 (36/Z)^3 delta``.
  Nuisances: ``efficiency_mismatch`` m gives the forward channels efficiency ``1 + m/2`` and
  the backward ones ``1 - m/2`` (acceptance mismatch comes from the channel map's
  ``acceptance`` entries); both cancel in the cross ratio.
* ``monitor`` channels: no asymmetry.
* ``signal_fraction`` D = S / (S + B): the asymmetric signal's share of the counts; the
  rest (for A_FB the nP->1S continuum under the 2S->1S line) has no asymmetry and dilutes
  it.  The diluted asymmetry ``A * D`` is the truth the monitor should report (it divides
  by the polarization, not by D).
"""

from __future__ import annotations

import numpy as np

from mupnc.daq.channel_map import ChannelMap

AFB_ENHANCEMENT = 680.0
"""A_FB = 680 (36/Z)^3 delta (2 delta E1/M1, talk part C)."""
KRYPTON_Z = 36

PRESETS = ("flat", "sm", "np")
"""``flat``: the configured asymmetry, flat in cos theta; ``sm``/``np``: value and shape below."""
ALR_PRESETS = {"sm": 1e-4, "np": 1e-3}
"""A_LR at 90 deg: SM-like ~1e-4 (Q^2 ~ 1 GeV^2), light new physics ~1e-3 (talk part A)."""
AFB_KRYPTON_PRESETS = {"sm": 0.5e-4, "np": 0.1}
"""A_FB of krypton: SM 0.5e-4; NP 0.1 (the talk's reference point, inside its 0.5 %-11 %)."""

_ANALYZING_SIGN = {"scatter": 1.0, "backward": 1.0, "forward": -1.0, "monitor": 0.0}
_EFFICIENCY_SIGN = {"forward": 0.5, "backward": -0.5}


def afb_asymmetry(z: int, delta: float) -> float:
    """A_FB of the 2S->1S gamma for nuclear charge ``z`` and 2S-2P mixing ``delta``."""
    return AFB_ENHANCEMENT * (KRYPTON_Z / z) ** 3 * delta


def preset_asymmetry(mode: str, preset: str, z: int = KRYPTON_Z) -> float:
    """The asymmetry of a named preset (``sm``/``np``) in a mode.

    A_FB presets fix delta from krypton and scale with Z as ``(36/Z)^3``.
    """
    if mode == "alr":
        return ALR_PRESETS[preset]
    delta = AFB_KRYPTON_PRESETS[preset] / AFB_ENHANCEMENT
    return afb_asymmetry(z, delta)


def alr_shape(cos_theta: np.ndarray, shape: str) -> np.ndarray:
    """Relative A_LR(cos theta), 1 at cos theta = 0 (shapes in the module docstring)."""
    c = np.asarray(cos_theta, dtype=np.float64)
    if shape == "flat":
        return np.ones_like(c)
    if shape == "sm":
        return 1.0 - c
    return 2.0 * (1.0 - c) / (2.0 - c)


def relative_asymmetries(channel_map: ChannelMap, shape: str) -> np.ndarray:
    """``A[c] / A0`` of the module docstring: the A_LR shape at each scatter channel's
    cos theta, 1 for every other role."""
    channels = channel_map.channels
    cos = np.array([0.0 if c.cos_theta is None else c.cos_theta for c in channels])
    scatter = np.array([c.role == "scatter" for c in channels], dtype=bool)
    return np.where(scatter, alr_shape(cos, shape), 1.0)


def channel_asymmetries(
    channel_map: ChannelMap, asymmetry: float, shape: str, signal_fraction: float
) -> np.ndarray:
    """``channel_asymmetry[c]`` of the module docstring, one per channel."""
    sign = np.array([_ANALYZING_SIGN[c.role] for c in channel_map.channels])
    return sign * asymmetry * relative_asymmetries(channel_map, shape) * signal_fraction


def expected_asymmetry(
    channel_map: ChannelMap, asymmetry: float, shape: str, signal_fraction: float
) -> float:
    """The asymmetry the monitor should report for a simulated run (fraction): ``A0 * D``,
    averaged over the scatter channels' shape for A_LR (the combined A_LR is their mean)."""
    relative = relative_asymmetries(channel_map, shape)
    scatter = [c.role == "scatter" for c in channel_map.channels]
    mean = float(np.mean(relative[scatter])) if any(scatter) else 1.0
    return float(asymmetry) * float(signal_fraction) * mean


def channel_efficiencies(channel_map: ChannelMap, efficiency_mismatch: float) -> np.ndarray:
    """Acceptance times relative efficiency of each channel (counts per incident muon)."""
    return np.array(
        [
            c.acceptance * (1.0 + _EFFICIENCY_SIGN.get(c.role, 0.0) * efficiency_mismatch)
            for c in channel_map.channels
        ]
    )
