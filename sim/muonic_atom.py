"""A_FB of the 2S->1S gamma of a muonic atom, from the 2S-2P mixing delta (the talk, part C).

A mu- captured into the 2S state (atomic radiative capture keeps its polarization) decays
to 1S by a single M1 photon with a parity-violating E1 admixture from the 2P state; with
theta the angle between the photon and the muon spin (the talk)::

    A_FB = [N(theta > pi/2) - N(theta < pi/2)] / sum = 2 delta E1/M1 ~ 680 (36/Z)^3 delta
    i delta = <2S_1/2| H_PV |2P_1/2> / Delta E

Mixing (hydrogen-like wave functions, the 2S-2P splitting from the finite nuclear size
``Delta E = (Z alpha)^4 m_mu^3 R_c^2 / 12``; the talk's formulas)::

    delta_SM = 3 sqrt3 G_F (-Q_W) / (16 sqrt2 pi R_c^2)
             = 3 sqrt3 G_F / (16 sqrt2 pi R_c^2) * (-Z) (g_p + g_n (A - Z)/Z)
    delta_NP = 3 sqrt3 g_mu / (2 Z alpha R_c^2 m_mu^2) * m_V a / (m_V a + 1)^3
               * (g_p^NP + g_n^NP (A - Z)/Z)

* ``R_c``: the nuclear rms charge radius (:func:`mupnc.sim.nucleus.charge_radius`, 4.23 fm
  for natural krypton), the length that sets the finite-size splitting of 2S_1/2 and
  2P_1/2; ``a = 1 / (Z alpha m_mu)`` the muonic Bohr radius (7.1 fm for krypton).
* ``g_p``, ``g_n``, ``g^NP``, ``Q_W``: :mod:`mupnc.sim.electroweak`.
* delta_NP is the talk's formula as written.  In its contact limit (m_V a >> 1, with
  ``4 pi alpha g_mu Q_NP / m_V^2`` in place of ``-G_F Q_W / (2 sqrt 2)``) it becomes the
  delta_SM above, which is also what the matrix element ``i sqrt3 G_F Q_W (Z alpha)^4
  m_mu^3 / (64 sqrt2 pi)`` over Delta E gives.  The transcript's delta_SM reads
  ``3 sqrt3 G_F / (8 sqrt2 pi Z alpha R_c^2) (g_p + g_n (A-Z)/Z)``, a factor 2/(Z^2 alpha)
  (0.21 for krypton) off its own delta_NP; with it A_FB[SM](Kr) would be 1.2e-5, not
  the talk's 0.5e-4.  mupnc uses the form consistent with both: A_FB[SM](Kr) = 5.8e-5,
  17 % above the talk's rounded 0.5e-4 (point-Coulomb wave functions and the perturbative
  finite-size splitting are good to tens of % at Z alpha = 0.26).
* Sign: delta follows the effective coupling C of :mod:`mupnc.sim.electroweak`, positive in
  the SM; the talk gives E1/M1 only in magnitude (680), and mupnc takes A_FB[SM] > 0 (the
  simulator's convention).  A mediator with g_mu Q_NP > 0 adds to the SM.

Decay electrons: the muon then decays in the atom; for a mu- the electron is emitted
preferentially *against* the spin, ``dN/dcos theta_e ~ 1 - (1/3) P cos theta_e`` (the
energy-integrated Michel distribution with xi = 1; PDG review "Muon decay parameters";
positrons of a mu+ go along the spin).  In the A_FB convention above a detector on the spin
axis sees them with the asymmetry :data:`DECAY_ELECTRON_ASYMMETRY` = +1/3 (a detector
averaging cos theta over its acceptance sees <|cos theta|> / 3).  Bound-state effects on
the spectrum and the competing nuclear capture (which only lowers the electrons' share)
are left out.
"""

from __future__ import annotations

import math

from mupnc.sim.electroweak import (
    FERMI_CONSTANT,
    FINE_STRUCTURE,
    HBAR_C,
    MUON_MASS,
    Mediator,
    weak_charge,
)
from mupnc.sim.nucleus import KRYPTON_Z, charge_radius

AFB_ENHANCEMENT = 680.0
"""A_FB = 680 (36/Z)^3 delta (2 delta E1/M1, talk part C)."""
DECAY_ELECTRON_ASYMMETRY = 1.0 / 3.0
"""A_FB of mu- decay electrons seen on the spin axis (module docstring)."""


def muonic_bohr_radius(z: int) -> float:
    """``a = hbar / (Z alpha m_mu c)`` in fm."""
    return HBAR_C / (z * FINE_STRUCTURE * MUON_MASS)


def mixing_delta_sm(z: int, mass_number: float) -> float:
    """delta_SM of the module docstring (dimensionless, positive)."""
    radius = charge_radius(mass_number) / (HBAR_C * 1e-3)  # GeV^-1
    return (
        3.0
        * math.sqrt(3.0)
        * FERMI_CONSTANT
        * -weak_charge(z, mass_number)
        / (16.0 * math.sqrt(2.0) * math.pi * radius**2)
    )


def mixing_delta_np(z: int, mass_number: float, mediator: Mediator) -> float:
    """delta_NP of the module docstring (the talk's formula) for ``mediator``."""
    radius = charge_radius(mass_number) / HBAR_C  # MeV^-1
    m_v_a = mediator.mass * muonic_bohr_radius(z) / HBAR_C
    za = z * FINE_STRUCTURE
    return (
        3.0
        * math.sqrt(3.0)
        * mediator.g_muon
        / (2.0 * za * radius**2 * MUON_MASS**2)
        * m_v_a
        / (m_v_a + 1.0) ** 3
        * mediator.charge(z, mass_number)
        / z
    )


def afb_asymmetry(z: int, delta: float) -> float:
    """A_FB of the 2S->1S gamma for nuclear charge ``z`` and 2S-2P mixing ``delta``."""
    return AFB_ENHANCEMENT * (KRYPTON_Z / z) ** 3 * delta


def afb_model(z: int, mass_number: float, mediator: Mediator | None = None) -> float:
    """A_FB from delta_SM (plus delta_NP of ``mediator``)."""
    delta = mixing_delta_sm(z, mass_number)
    if mediator is not None:
        delta += mixing_delta_np(z, mass_number, mediator)
    return afb_asymmetry(z, delta)
