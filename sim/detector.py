"""Detector physics: the parity-violating asymmetry and the relative rate of each channel of
the channel map.

Conventions (helicity and roles in :mod:`mupnc.daq.helicity`, :mod:`mupnc.daq.channel_map`).
The mean count of channel ``c`` in a window with signed longitudinal beam polarization ``P_L`` is::

    mu[c] = muons * acceptance[c] * efficiency[c] * weight[c] * (1 + P_L * channel_asymmetry[c])
    channel_asymmetry[c] = analyzing_sign[c] * (A[c] * D + f_e * A_e)

* ``scatter`` channels (A_LR, muon scattering): ``analyzing_sign = +1``,
  A_LR = (sigma_R - sigma_L) / (sigma_R + sigma_L) with R = helicity +1.
* ``forward`` / ``backward`` (A_FB, 2S->1S gamma): ``analyzing_sign = -1`` / ``+1``
  (A_FB counts gammas at theta > pi/2 from the spin positively and the forward detector sees
  theta < pi/2 for helicity +1).  Nuisances: ``efficiency_mismatch`` m gives the forward
  channels efficiency ``1 + m/2`` and the backward ones ``1 - m/2`` (acceptance mismatch
  comes from the channel map's ``acceptance`` entries); both cancel in the cross ratio.
* ``monitor`` channels: no asymmetry, weight 1.
* ``bpm`` channels are beam position monitors, not detectors: every array here has one
  entry per *detector* channel (:meth:`mupnc.daq.channel_map.ChannelMap.detectors`).
* ``D`` = ``signal_fraction``: the asymmetric signal's share of the counts.  In A_FB mode
  ``f_e`` = ``decay_electron_fraction`` is the share of muon-decay electrons, with their own
  asymmetry ``A_e`` = :data:`mupnc.sim.muonic_atom.DECAY_ELECTRON_ASYMMETRY` (+1/3 for mu-);
  the rest, ``1 - D - f_e``, is the unpolarized nP->1S continuum under the 2S->1S line.

Presets (``shape``):

* ``flat``: ``A[c] = A0``, the configured asymmetry, for every channel; ``weight = 1`` (the
  channel map's acceptance alone).
* ``sm`` / ``np``, physical, at the beam momentum p off the target (Z, A; default graphite
  for A_LR and krypton for A_FB, :data:`TARGET_Z`):

  - scatter: ``A[c] = A_LR(theta_c, p)`` of :mod:`mupnc.sim.alr_model` (``sm``: the
    gamma-Z term, proportional to 1 - cos theta; ``np``: plus the mediator
    :data:`NP_PRESET_BENCHMARK` ``["alr"]``), and ``weight[c]`` the Mott cross section
    with form factor at the bin centre, divided by its mean over the scatter channels: the
    counts go as cross section x acceptance, while the channel map's acceptances and the
    muon rate still set the scale (the mean scatter weight is 1, so with equal acceptances
    the scatter channels count as many muons in total as with ``flat``).  A scatter channel
    without ``cos_theta`` is taken at 90 deg; one at cos theta = 1 (infinite Rutherford
    rate) is refused.
  - forward/backward: ``A[c] = A_FB`` from the 2S-2P mixing of :mod:`mupnc.sim.muonic_atom`
    (``sm``: delta_SM; ``np``: plus delta_NP of the mediator
    :data:`NP_PRESET_BENCHMARK` ``["afb"]``).

  ``A0`` (:func:`preset_asymmetry`, the run's injected asymmetry) is A_LR at 90 deg or
  A_FB; :func:`relative_asymmetries` gives ``A[c] / A0``.

What the monitor measures (:func:`expected_asymmetry`): the combined A_LR is the yield
asymmetry of the summed scatter counts, i.e. the count-weighted mean of the channel
asymmetries, ``sum_c rate_c A[c] D / sum_c rate_c`` (rate = acceptance x weight); the A_FB
cross ratio of the summed forward and backward counts gives ``A_FB D + f_e A_e``.  Both are
divided by the polarization, not by D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mupnc.daq.channel_map import ChannelMap
from mupnc.sim.alr_model import alr_asymmetry, mott_cross_section
from mupnc.sim.beam import DEFAULT_MOMENTUM
from mupnc.sim.electroweak import NP_BENCHMARKS, Mediator
from mupnc.sim.muonic_atom import DECAY_ELECTRON_ASYMMETRY, afb_model
from mupnc.sim.nucleus import CARBON_Z, KRYPTON_Z, default_mass_number

PRESETS = ("flat", "sm", "np")
"""``flat``: the configured asymmetry, flat in cos theta; ``sm``/``np``: the physical models."""
PHYSICAL_PRESETS = ("sm", "np")
TARGET_Z = {"alr": CARBON_Z, "afb": KRYPTON_Z}
"""Default target of each mode: graphite for A_LR (talk part A), krypton for A_FB (part C)."""
NP_PRESET_BENCHMARK = {"alr": "v100", "afb": "v10"}
"""The mediator (:data:`mupnc.sim.electroweak.NP_BENCHMARKS`) of the ``np`` preset in each
mode: ``v100`` spans the talk's A_LR figure (1e-6...1e-3 at 29 and 100 MeV/c), ``v10`` gives
the talk's A_FB reference point (0.1 for krypton)."""

_ANALYZING_SIGN = {
    "scatter": 1.0,
    "backward": 1.0,
    "forward": -1.0,
    "monitor": 0.0,
    "pol_forward": 0.0,
    "pol_backward": 0.0,
    "bpm": 0.0,
    "coil": 0.0,
}
_EFFICIENCY_SIGN = {"forward": 0.5, "backward": -0.5}


def target_z(mode: str) -> int:
    """The default nuclear charge of the target in ``mode`` (:data:`TARGET_Z`)."""
    return TARGET_Z.get(mode, KRYPTON_Z)


@dataclass(frozen=True)
class Kinematics:
    """Where the physical presets are evaluated: the beam ``momentum`` (MeV/c) and the
    target nucleus (charge ``z``, ``mass_number``; None: the mode's target of
    :data:`TARGET_Z` and its element's mass number)."""

    momentum: float = DEFAULT_MOMENTUM
    z: int | None = None
    mass_number: float | None = None

    def nucleus(self, mode: str) -> tuple[int, float]:
        """(Z, A) of the target in ``mode``."""
        z = target_z(mode) if self.z is None else self.z
        return z, default_mass_number(z) if self.mass_number is None else self.mass_number


DEFAULT_KINEMATICS = Kinematics()


def preset_mediator(mode: str, preset: str) -> Mediator | None:
    """The new-physics mediator of ``preset`` in ``mode`` (None but for ``np``)."""
    return NP_BENCHMARKS[NP_PRESET_BENCHMARK[mode]] if preset == "np" else None


def preset_asymmetry(mode: str, preset: str, kinematics: Kinematics = DEFAULT_KINEMATICS) -> float:
    """``A0`` of a physical preset (``sm``/``np``): A_LR at 90 deg for a mu- of the
    ``kinematics``' momentum off its target, or A_FB of the muonic atom (module docstring)."""
    z, a = kinematics.nucleus(mode)
    mediator = preset_mediator(mode, preset)
    if mode == "alr":
        return float(alr_asymmetry(0.0, kinematics.momentum, z, a, mediator))
    return afb_model(z, a, mediator)


def alr_shape(
    cos_theta: np.ndarray, shape: str, kinematics: Kinematics = DEFAULT_KINEMATICS
) -> np.ndarray:
    """Relative A_LR(cos theta), 1 at cos theta = 0: 1 (``flat``), ``1 - cos theta``
    (``sm``: A_SM goes as Q^2, exactly), A_LR(theta) / A_LR(90 deg) at the ``kinematics``
    (``np``)."""
    c = np.asarray(cos_theta, dtype=np.float64)
    if shape == "flat":
        return np.ones_like(c)
    if shape == "sm":
        return 1.0 - c
    z, a = kinematics.nucleus("alr")
    mediator = preset_mediator("alr", shape)
    p = kinematics.momentum
    return alr_asymmetry(c, p, z, a, mediator) / alr_asymmetry(0.0, p, z, a, mediator)


def _scatter_bins(channel_map: ChannelMap) -> tuple[np.ndarray, np.ndarray]:
    """cos theta of each channel (0 without one) and which channels are scatter channels."""
    channels = channel_map.channels
    cos = np.array([0.0 if c.cos_theta is None else c.cos_theta for c in channels])
    scatter = np.array([c.role == "scatter" for c in channels], dtype=bool)
    return cos, scatter


def preset_problem(channel_map: ChannelMap, preset: str) -> str | None:
    """Why ``preset`` cannot weight ``channel_map``'s scatter channels, or ``None``."""
    if preset not in PHYSICAL_PRESETS:
        return None
    for channel in channel_map.channels:
        if channel.role == "scatter" and channel.cos_theta is not None and channel.cos_theta >= 1:
            return (
                f"preset {preset!r} needs scatter channels with cos_theta < 1 (the Mott cross"
                f" section diverges at 0 deg), channel {channel.name!r} has {channel.cos_theta!r}"
            )
    return None


def relative_asymmetries(
    channel_map: ChannelMap,
    shape: str,
    *,
    kinematics: Kinematics = DEFAULT_KINEMATICS,
) -> np.ndarray:
    """``A[c] / A0`` of the module docstring: the A_LR shape at each scatter channel's
    cos theta, 1 for every other role."""
    channel_map = channel_map.detectors()
    cos, scatter = _scatter_bins(channel_map)
    z, a = kinematics.nucleus(channel_map.mode)
    shaped = alr_shape(cos, shape, Kinematics(kinematics.momentum, z, a))
    return np.where(scatter, shaped, 1.0)


def scatter_weights(
    channel_map: ChannelMap,
    shape: str,
    *,
    kinematics: Kinematics = DEFAULT_KINEMATICS,
) -> np.ndarray:
    """``weight[c]`` of the module docstring: for a physical preset, the Mott cross section at
    each scatter channel's cos theta over its mean across the scatter channels; 1 otherwise."""
    channel_map = channel_map.detectors()
    cos, scatter = _scatter_bins(channel_map)
    weights = np.ones(cos.size)
    if shape not in PHYSICAL_PRESETS or not scatter.any():
        return weights
    z, a = kinematics.nucleus(channel_map.mode)
    sigma = mott_cross_section(cos[scatter], kinematics.momentum, z, a)
    weights[scatter] = sigma / sigma.mean()
    return weights


def channel_asymmetries(
    channel_map: ChannelMap,
    asymmetry: float,
    shape: str,
    signal_fraction: float,
    *,
    kinematics: Kinematics = DEFAULT_KINEMATICS,
    decay_electron_fraction: float = 0.0,
) -> np.ndarray:
    """``channel_asymmetry[c]`` of the module docstring, one per channel (``asymmetry`` is
    ``A0``)."""
    channel_map = channel_map.detectors()
    sign = np.array([_ANALYZING_SIGN[c.role] for c in channel_map.channels])
    relative = relative_asymmetries(channel_map, shape, kinematics=kinematics)
    diluted = sign * asymmetry * relative * signal_fraction
    if decay_electron_fraction:
        return diluted + sign * decay_electron_fraction * DECAY_ELECTRON_ASYMMETRY * np.array(
            [c.role in ("forward", "backward") for c in channel_map.channels]
        )
    return diluted


def channel_efficiencies(
    channel_map: ChannelMap,
    efficiency_mismatch: float,
    *,
    shape: str = "flat",
    kinematics: Kinematics = DEFAULT_KINEMATICS,
) -> np.ndarray:
    """Counts per incident muon of each channel: acceptance x relative efficiency (x the
    cross-section weight of a physical preset)."""
    channel_map = channel_map.detectors()
    efficiency = np.array(
        [
            c.acceptance * (1.0 + _EFFICIENCY_SIGN.get(c.role, 0.0) * efficiency_mismatch)
            for c in channel_map.channels
        ]
    )
    if shape not in PHYSICAL_PRESETS:
        return efficiency
    return efficiency * scatter_weights(channel_map, shape, kinematics=kinematics)


def expected_asymmetry(
    channel_map: ChannelMap,
    asymmetry: float,
    shape: str,
    signal_fraction: float,
    *,
    kinematics: Kinematics = DEFAULT_KINEMATICS,
    decay_electron_fraction: float = 0.0,
) -> float:
    """The asymmetry the monitor should report for a simulated run (fraction; module
    docstring): A_LR the count-weighted mean of the scatter channels' ``A[c] D``, A_FB
    ``A0 D + f_e A_e``."""
    channel_map = channel_map.detectors()
    relative = relative_asymmetries(channel_map, shape, kinematics=kinematics)
    _, scatter = _scatter_bins(channel_map)
    mean = 1.0
    if scatter.any():
        rate = channel_efficiencies(channel_map, 0.0, shape=shape, kinematics=kinematics)[scatter]
        total = rate.sum()
        mean = float((rate * relative[scatter]).sum() / total) if total > 0 else 1.0
    expected = float(asymmetry) * float(signal_fraction) * mean
    if decay_electron_fraction:
        expected += float(decay_electron_fraction) * DECAY_ELECTRON_ASYMMETRY
    return expected
