"""A_LR(theta, p) and the cross section of polarized muons scattering elastically off a nucleus.

Kinematics: a muon of momentum ``p`` (MeV/c) scatters elastically off a nucleus of charge Z
and mass number A by the lab angle theta.  The recoil is neglected (the nucleus is static:
|p'| = |p|, no energy transfer; the neglected terms are of order p / M_A, 1 % for
100 MeV/c on carbon), so the momentum transfer is space-like with::

    Q^2 = -q^2 = |p - p'|^2 = 2 p^2 (1 - cos theta) = 4 p^2 sin^2(theta / 2)

Sign convention (as docs/reference.md and :mod:`mupnc.sim.detector`): ``A_LR = (sigma_R - sigma_L)
/ (sigma_R + sigma_L)``, R = helicity +1 (spin along the momentum), for a mu-.  A channel's
counts go as ``1 + P_L A_LR``.

Asymmetry (Born approximation, one-boson exchange, ultra-relativistic lepton helicity
amplitudes; the gamma-Z interference of polarized electron scattering, e.g. the PDG review
"Electroweak model and constraints on new physics", and the talk's "A_LR ~ G_F Q^2 /
(4 pi alpha)")::

    A_LR = C(Q^2) Q^2 / (2 pi alpha Z)
    SM:  C = -G_F Q_W / (2 sqrt 2)             =>  A_SM = -G_F Q^2 Q_W / (4 sqrt 2 pi alpha Z)
    NP:  C += 4 pi alpha g_mu Q_NP / (m_V^2 + Q^2)
                                               =>  A_NP = 2 g_mu Q_NP Q^2 / (Z (m_V^2 + Q^2))

(``C``, ``Q_W``, ``Q_NP``: :mod:`mupnc.sim.electroweak`).  Q_W < 0 for every nucleus but
hydrogen, so the SM A_LR is positive: +1.4e-7 at 90 deg and 29 MeV/c off carbon, ~1e-4 at
Q^2 = 1 GeV^2 as in the talk.  A light mediator enhances it by the propagator: for
m_V^2 >> Q^2 A_NP grows as Q^2 like the SM (a contact interaction), for m_V^2 << Q^2 it
saturates at ``2 g_mu Q_NP / Z``.  The weak and electromagnetic charge distributions are
taken equal (the form factors cancel in the ratio; a neutron skin is neglected); for mu+
the interference term changes sign.

Muon mass: the formula above is the beta -> 1 limit.  For a massive lepton off a static
spin-0 nucleus the helicity-conserving amplitudes (the only ones the axial current feeds)
carry ``cos(theta/2)`` and the helicity-flip ones ``(m / E) sin(theta/2)``, which multiplies
A_LR by :func:`helicity_factor` ``K = beta cos^2(theta/2) / (1 - beta^2 sin^2(theta/2))``
(the same algebra as the Mott factor below; K -> 1 as beta -> 1, K = 0 backward, 0.14 at
90 deg for 29 MeV/c).  ``alr_asymmetry(..., massive=True)`` applies it; the simulator's
presets use the ultra-relativistic formula of the talk and the issue (K is a factor for
the physics owner to decide on).

Cross section (Mott: Rutherford for a spin-1/2 projectile, times the squared charge form
factor; any nuclear-physics textbook, e.g. Povh et al., "Particles and Nuclei")::

    d sigma / d Omega = (Z alpha hbar c)^2 / (4 p^2 beta^2 sin^4(theta/2))
                        * (1 - beta^2 sin^2(theta/2)) * F(q)^2,     q = 2 p sin(theta/2)

with F from :func:`mupnc.sim.nucleus.form_factor`.
"""

from __future__ import annotations

import math

import numpy as np

from mupnc.sim.electroweak import FINE_STRUCTURE, HBAR_C, MUON_MASS, Mediator, sm_coupling
from mupnc.sim.nucleus import charge_radius, form_factor

FM2_IN_CM2 = 1e-26


def q_squared(cos_theta: np.ndarray | float, momentum: float) -> np.ndarray:
    """Q^2 = 2 p^2 (1 - cos theta) in MeV^2 (elastic, recoil neglected; module docstring)."""
    return 2.0 * momentum**2 * (1.0 - np.asarray(cos_theta, dtype=np.float64))


def muon_beta(momentum: float) -> float:
    """v/c of a muon of ``momentum`` MeV/c."""
    return momentum / math.hypot(momentum, MUON_MASS)


def alr_from_q2(
    q2: np.ndarray | float, z: float, mass_number: float, mediator: Mediator | None = None
) -> np.ndarray:
    """A_LR = C(Q^2) Q^2 / (2 pi alpha Z) at ``q2`` (MeV^2), ultra-relativistic (module
    docstring): the SM term, plus ``mediator``'s if given."""
    q2 = np.asarray(q2, dtype=np.float64)
    coupling = sm_coupling(z, mass_number) + (
        0.0 if mediator is None else mediator.coupling(z, mass_number, q2)
    )
    return coupling * q2 / (2.0 * math.pi * FINE_STRUCTURE * z)


def helicity_factor(cos_theta: np.ndarray | float, momentum: float) -> np.ndarray:
    """K = beta cos^2(theta/2) / (1 - beta^2 sin^2(theta/2)): A_LR of a muon of finite mass
    over the ultra-relativistic one (module docstring)."""
    beta = muon_beta(momentum)
    c = np.asarray(cos_theta, dtype=np.float64)
    return beta * (1.0 + c) / 2.0 / (1.0 - beta**2 * (1.0 - c) / 2.0)


def alr_asymmetry(
    cos_theta: np.ndarray | float,
    momentum: float,
    z: float,
    mass_number: float,
    mediator: Mediator | None = None,
    *,
    massive: bool = False,
) -> np.ndarray:
    """A_LR (fraction) at lab angle ``cos_theta`` for a mu- of ``momentum`` MeV/c off nucleus
    (``z``, ``mass_number``): the SM gamma-Z interference plus ``mediator``'s term;
    ``massive`` applies the muon-mass factor :func:`helicity_factor`."""
    a = alr_from_q2(q_squared(cos_theta, momentum), z, mass_number, mediator)
    return a * helicity_factor(cos_theta, momentum) if massive else a


def mott_cross_section(
    cos_theta: np.ndarray | float, momentum: float, z: float, mass_number: float
) -> np.ndarray:
    """d sigma / d Omega in cm^2/sr: Mott with the form factor of :mod:`mupnc.sim.nucleus`
    (module docstring).  Diverges at cos theta = 1."""
    c = np.asarray(cos_theta, dtype=np.float64)
    sin2_half = (1.0 - c) / 2.0
    beta2 = muon_beta(momentum) ** 2
    rutherford = (z * FINE_STRUCTURE * HBAR_C) ** 2 / (
        4.0 * momentum**2 * beta2 * sin2_half**2
    )  # fm^2
    q = 2.0 * momentum * np.sqrt(sin2_half)
    f = form_factor(q, charge_radius(mass_number))
    return rutherford * (1.0 - beta2 * sin2_half) * f * f * FM2_IN_CM2
