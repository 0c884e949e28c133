"""Electroweak constants, the nuclear weak charge and the light-mediator benchmarks.

Units: masses and momenta in MeV (natural units, c = 1 in formulas), lengths in fm,
``G_F`` in GeV^-2; couplings are pure numbers.

The parity-violating (PV) muon-nucleus interactions of the talk (part C slide,
/work/shared/physics transcript) couple the muon *axial* current to the nucleons'
*vector* currents::

    L_SM = -(G_F / (2 sqrt 2)) mu-bar g_nu g_5 mu (g_n n-bar g_nu n + g_p p-bar g_nu p)
    L_NP = mu-bar g_nu g_5 mu [4 pi alpha g_mu / (m_V^2 + box)] (g_n^NP n-bar g_nu n
                                                              + g_p^NP p-bar g_nu p)

For a spin-0 nucleus, coherently, both act as one effective coupling of the muon axial
current to the nuclear charge density (box -> Q^2 for a space-like momentum transfer
Q^2 = -q^2; the static limit Q^2 -> 0 is the atom's)::

    C(Q^2) = -(G_F / (2 sqrt 2)) Q_W + 4 pi alpha g_mu Q_NP / (m_V^2 + Q^2)

with the weak charge ``Q_W = Z g_p + N g_n`` and the new-physics charge
``Q_NP = Z g_p^NP + N g_n^NP`` (N = A - Z).  Both A_LR (:mod:`mupnc.sim.alr_model`)
and the 2S-2P mixing delta (:mod:`mupnc.sim.muonic_atom`) are proportional to C, so a
mediator whose couplings have ``g_mu Q_NP > 0`` adds to the Standard Model (SM) in both.

SM couplings at tree level with the low-energy weak mixing angle (standard textbook
result, e.g. the PDG review "Electroweak model and constraints on new physics"):
``g_p = 1 - 4 sin^2(theta_W) = 0.0456``, ``g_n = -1``, so ``Q_W = Z (1 - 4 sin^2 theta_W)
- N`` (-5.73 for carbon, -46.2 for natural krypton).  Radiative corrections
(Q_W(p) ~ 0.071, Q_W(n) ~ -0.989 in the same review) change these by 2-3 %, below the
accuracy of the models that use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FERMI_CONSTANT = 1.1663788e-5
"""G_F in GeV^-2 (PDG, from the muon lifetime)."""
FINE_STRUCTURE = 1.0 / 137.035999084
"""alpha at Q^2 = 0 (CODATA 2018)."""
SIN2_THETA_W = 0.2386
"""sin^2 theta_W (MS-bar) at Q^2 -> 0, the value for low-energy parity violation (PDG)."""
MUON_MASS = 105.6583755
"""m_mu in MeV (PDG)."""
HBAR_C = 197.3269804
"""hbar c in MeV fm."""
GEV_PER_MEV = 1e-3

PROTON_WEAK_COUPLING = 1.0 - 4.0 * SIN2_THETA_W
"""g_p of the talk's L_SM: the proton's weak charge at tree level, 0.0456."""
NEUTRON_WEAK_COUPLING = -1.0
"""g_n of the talk's L_SM: the neutron's weak charge at tree level."""


def weak_charge(z: float, mass_number: float) -> float:
    """The nuclear weak charge ``Q_W = Z (1 - 4 sin^2 theta_W) - N`` (N = A - Z; tree level)."""
    return z * PROTON_WEAK_COUPLING + (mass_number - z) * NEUTRON_WEAK_COUPLING


def sm_coupling(z: float, mass_number: float) -> float:
    """The SM part of ``C`` (module docstring), ``-G_F Q_W / (2 sqrt 2)``, in MeV^-2."""
    g_f = FERMI_CONSTANT * GEV_PER_MEV**2
    return -g_f * weak_charge(z, mass_number) / (2.0 * math.sqrt(2.0))


@dataclass(frozen=True)
class Mediator:
    """A light vector boson V with the talk's ``L_NP`` couplings (module docstring).

    ``mass`` m_V in MeV; ``g_muon`` the muon's axial coupling and ``g_proton``,
    ``g_neutron`` the nucleons' vector couplings, in units of ``4 pi alpha`` as in the
    talk's ``L_NP``.  Only the products ``g_mu g_p`` and ``g_mu g_n`` enter.
    """

    name: str
    mass: float
    g_muon: float
    g_proton: float
    g_neutron: float = 0.0

    def charge(self, z: float, mass_number: float) -> float:
        """The new-physics nuclear charge ``Q_NP = Z g_p^NP + N g_n^NP``."""
        return z * self.g_proton + (mass_number - z) * self.g_neutron

    def coupling(self, z: float, mass_number: float, q2: float | np.ndarray) -> float | np.ndarray:
        """The mediator's part of ``C``, ``4 pi alpha g_mu Q_NP / (m_V^2 + Q^2)``, in MeV^-2
        (``q2`` = Q^2 in MeV^2: the propagator is ~1/Q^2 for m_V^2 << Q^2, a contact
        interaction ~1/m_V^2 for m_V^2 >> Q^2)."""
        numerator = 4.0 * math.pi * FINE_STRUCTURE * self.g_muon * self.charge(z, mass_number)
        return numerator / (self.mass**2 + q2)


NP_BENCHMARKS = {
    "v10": Mediator("v10", mass=10.0, g_muon=1e-2, g_proton=5.3e-2),
    "v100": Mediator("v100", mass=100.0, g_muon=1e-2, g_proton=6.25e-2),
}
"""mupnc's benchmark mediators, both coupling to protons only (like a kinetically mixed
dark photon on the nucleon side) and to the muon axially (the talk's gauged right-handed
muon number):

* ``v10``: m_V = 10 MeV (the talk: "light, e.g. ~10 MeV"), g_mu g_p = 5.3e-4.  A_LR off
  carbon saturates at 2 g_mu g_p ~ 1e-3 wherever Q^2 >> m_V^2; A_FB of krypton = 0.10,
  the talk's NP reference point (its range: 0.5 %-11 %).
* ``v100``: m_V = 100 MeV (Batell-McKeen-Pospelov: "~100 MeV scale or lighter"),
  g_mu g_p = 6.25e-4.  A_LR off carbon grows as Q^2 below m_V^2: from ~1e-3 at 100 MeV/c
  backward down to ~2e-6 at 29 MeV/c, cos theta = 0.99, the range of the talk's A_LR
  figure (1e-6...1e-3 for p = 29 and 100 MeV/c); A_FB of krypton 0.03.

The talk's own benchmark points A, B, C (its Table I) are not in the transcript; these
are mupnc's, chosen to reproduce the talk's quoted ranges (tests/test_physics_models.py).
"""
