"""Sensitivity planner: events and running time to see an asymmetry at n_sigma.

Statistics: a counting asymmetry of N counted events has ``sigma_A = 1/sqrt(N)``, and the
measured asymmetry is ``P * D * A`` (polarization P, signal fraction D = S/(S+B) of the
counted events, physics asymmetry A), so seeing it at ``n_sigma`` takes::

    events   N = (n_sigma / (P * D * A))^2          counted events, signal + background
    signal   S = D * N
    muons      = S / efficiency = n_sigma^2 / (P^2 * D * A^2 * efficiency)
    seconds  T = muons / Phi                        (Phi: muons/s)

``efficiency`` counts *signal* events per incident muon (the chain below); the background
comes on top of it, so a background that dilutes the asymmetry by D also brings 1/D times
the counts: T goes as 1/D, not 1/D^2.  ``sigma`` (n_sigma) defaults to 5; the talk's
running times are for ``N > 1/A^2``, i.e. n_sigma = 1.

Asymmetry: by default that of the simulator's physical models (``preset`` ``sm`` or ``np``):

* ``afb``: A_FB from the 2S-2P mixing delta (:mod:`mupnc.sim.muonic_atom`) of nucleus ``z``
  (default krypton): SM 5.8e-5 (talk: ~0.5e-4), NP 0.10 (mediator ``v10``);
* ``alr``: A_LR(Q^2) off graphite (:mod:`mupnc.sim.alr_model`, the ultra-relativistic
  formula, a function of Q^2 alone): SM 8.6e-5 at Q^2 = 1 GeV^2 (talk: ~1e-4), NP with
  the mediator ``v100``.  ``Q^2`` is ``q2`` (GeV^2, default 1), or ``2 p^2 (1 - cos
  theta)`` for a ``momentum`` p (MeV/c) and ``cos_theta`` (default 0, 90 deg).

Efficiency chain (signal events counted per incident muon):

* ``afb`` (muonic atom, 2S->1S gamma):
  ``efficiency = P_ARC(2S) * B_1gamma * eps_gamma = 1e-6 * 1e-4 * 0.36 = 3.6e-11``

  - ``P_ARC(2S) = 1e-6``: atomic radiative capture into 2S in a thin Z ~ 30-36 target
    (talk: "approaches 1e-6");
  - ``B_1gamma = 1e-4``: share of 2S atoms that emit the single-photon 2S->1S (M1 + PV E1)
    line; assumed, not in the talk (it competes with two-photon decay and the muon's
    other 2S losses);
  - ``eps_gamma = 0.36``: forward + backward gamma detectors, solid angle (0.6) times
    full-energy efficiency (0.6); assumed.

  With P = D = 1 and n_sigma = 1 (the talk's ``N > 1/A^2``) this gives T = 8.2e7 s at
  Phi = 1e11/s for A_FB[SM](Kr) = 5.8e-5 (talk: ~1e8 s) and 2.8e5 s at Phi = 1e7/s for
  A = 0.1 (talk: ~3e5 s).  Only the product 3.6e-11 is fixed by the talk's numbers; the
  split between the last two factors is our assumption.
* ``alr`` (muon scattering): ``efficiency = P_scatter * eps_det`` with
  ``P_scatter = 1e-6 * (1 GeV^2 / Q^2)`` (talk: 1e-6 in 20 cm of graphite at Q^2 ~ 1 GeV^2;
  the cross section goes as 1/Q^2, ~100x larger at 0.01 GeV^2) and ``eps_det = 1``.  The
  SM A_LR at 1 GeV^2 needs N = 1.4e8 events, 1.4e14 muons (talk: > 1e8, > 1e14); A = 1e-3
  at 0.01 GeV^2 needs 1e10 muons (as in the talk), both at n_sigma = 1.

``efficiency`` may be given directly (signal events per muon) to replace the chain.

The demo is not this experiment: its shipped channel maps (``mupnc.daq``'s
``channel_maps/``) give the simulated detector an acceptance of 2e-3 per muon (8 A_LR
counters of 2.5e-4; two gamma detectors of 1e-3), 2000x the A_LR chain above and 5.6e7x
the A_FB one, so that a demo shows a result in minutes.  A plan names both
(``demo_efficiency``, and ``demo_seconds``: the time at the demo's efficiency), and a run's
report gives the efficiency its data show (``efficiency`` in :func:`mupnc.db.summary.run_summary`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mupnc.daq.channel_map import default_channel_map
from mupnc.monitor.analysis.statistics import events_for_significance
from mupnc.sim.alr_model import alr_from_q2
from mupnc.sim.beam import MOMENTUM_RANGE
from mupnc.sim.detector import Kinematics, preset_asymmetry, preset_mediator
from mupnc.sim.nucleus import CARBON_Z, KRYPTON_Z, default_mass_number

ARC_2S_PROBABILITY = 1e-6
SINGLE_PHOTON_BRANCHING = 1e-4
GAMMA_DETECTION = 0.36
SCATTER_PROBABILITY_1GEV2 = 1e-6
SCATTER_DETECTION = 1.0
MODES = ("alr", "afb")
PRESETS = ("sm", "np")
DEFAULT_SIGMA = 5.0
"""n_sigma of a discovery; the talk's running times are for 1 sigma."""
MEV2_PER_GEV2 = 1e6


class PlanError(ValueError):
    """Planner inputs that make no sense; the message names the input."""


@dataclass(frozen=True)
class Plan:
    """A planner answer with its inputs (``seconds`` of beam at ``flux`` muons/s;
    ``events`` counted, signal and background, ``signal_events`` of them signal)."""

    events: float
    seconds: float
    muons: float
    days: float
    mode: str
    flux: float
    asymmetry: float
    sigma: float
    polarization: float
    signal_fraction: float
    efficiency: float
    efficiency_chain: dict[str, float]
    z: int | None = None
    q2: float | None = None
    signal_events: float = 0.0
    preset: str = "sm"
    momentum: float | None = None
    cos_theta: float | None = None
    demo_efficiency: float = 0.0
    """Signal events per muon of the demo's simulated detector (its shipped channel map)."""
    demo_seconds: float = 0.0
    """The running time at :attr:`demo_efficiency` instead of :attr:`efficiency`."""

    def to_dict(self) -> dict:
        return asdict(self)


def beside_the_planner(summary: dict) -> dict:
    """A run's summary (:func:`mupnc.db.summary.run_summary`) with the planner's efficiency
    for its mode (default chain) beside the measured one: its ``efficiency`` gains
    ``planner`` and ``measured_over_planner`` (None before any window).  Returns it."""
    efficiency = summary["efficiency"]
    efficiency["planner"] = planner_efficiency(summary["mode"])
    measured = efficiency["measured"]
    ratio = None if measured is None else measured / efficiency["planner"]
    efficiency["measured_over_planner"] = ratio
    return summary


def planner_efficiency(mode: str) -> float:
    """Signal events per muon the planner assumes for ``mode`` (its default chain)."""
    return math.prod(efficiency_chain(mode).values())


def efficiency_chain(mode: str, q2: float = 1.0) -> dict[str, float]:
    """The factors of the efficiency chain (module docstring) by name; ``q2`` in GeV^2."""
    if mode == "afb":
        return {
            "arc_2s_probability": ARC_2S_PROBABILITY,
            "single_photon_branching": SINGLE_PHOTON_BRANCHING,
            "gamma_detection": GAMMA_DETECTION,
        }
    return {
        "scatter_probability": SCATTER_PROBABILITY_1GEV2 / q2,
        "detection": SCATTER_DETECTION,
    }


def model_asymmetry(
    mode: str, preset: str = "sm", *, z: int | None = None, q2: float = 1.0
) -> float:
    """The simulator's asymmetry for ``preset``: A_FB of nucleus ``z`` (default krypton), or
    A_LR off graphite at ``q2`` GeV^2 (module docstring)."""
    if mode == "afb":
        return preset_asymmetry("afb", preset, Kinematics(z=KRYPTON_Z if z is None else z))
    mediator = preset_mediator("alr", preset)
    a = default_mass_number(CARBON_Z)
    return float(alr_from_q2(q2 * MEV2_PER_GEV2, CARBON_Z, a, mediator))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PlanError(message)


def _momentum_transfer(q2: float | None, momentum: float | None, cos_theta: float | None) -> float:
    """Q^2 in GeV^2 from ``q2`` or from ``momentum`` and ``cos_theta`` (default 1 GeV^2)."""
    _require(q2 is None or momentum is None, "give q2 or momentum (with cos_theta), not both")
    _require(cos_theta is None or momentum is not None, "cos_theta needs a momentum")
    if momentum is not None:
        low, high = MOMENTUM_RANGE
        _require(
            math.isfinite(momentum) and low <= momentum <= high,
            f"momentum must lie in [{low:g}, {high:g}] MeV/c, got {momentum!r}",
        )
        cos = 0.0 if cos_theta is None else cos_theta
        _require(
            math.isfinite(cos) and -1 <= cos < 1, f"cos_theta must lie in [-1, 1), got {cos!r}"
        )
        return 2.0 * momentum**2 * (1.0 - cos) / MEV2_PER_GEV2
    q2 = 1.0 if q2 is None else q2
    _require(math.isfinite(q2) and q2 > 0, f"q2 must be a positive number (GeV^2), got {q2!r}")
    return q2


def plan(
    mode: str,
    *,
    flux: float = 1e11,
    asymmetry: float | None = None,
    sigma: float = DEFAULT_SIGMA,
    z: int | None = None,
    q2: float | None = None,
    momentum: float | None = None,
    cos_theta: float | None = None,
    preset: str = "sm",
    polarization: float = 1.0,
    signal_fraction: float = 1.0,
    efficiency: float | None = None,
) -> Plan:
    """Events and running time for ``mode`` (``alr``/``afb``) at ``sigma`` standard deviations.

    ``asymmetry`` defaults to the model value of ``preset`` (module docstring).  ``z``
    applies to ``afb`` only; ``q2`` (GeV^2) or ``momentum`` (MeV/c) with ``cos_theta`` to
    ``alr`` only.
    """
    _require(mode in MODES, f"mode must be one of {MODES}, got {mode!r}")
    _require(preset in PRESETS, f"preset must be one of {PRESETS}, got {preset!r}")
    _require(z is None or mode == "afb", "z (nuclear charge) applies to mode afb only")
    _require(
        (q2 is None and momentum is None and cos_theta is None) or mode == "alr",
        "q2, momentum and cos_theta apply to mode alr only",
    )
    if mode == "afb":
        z = KRYPTON_Z if z is None else z
        _require(
            isinstance(z, int) and 1 <= z <= 120, f"z must be an integer in [1, 120], got {z!r}"
        )
    else:
        q2 = _momentum_transfer(q2, momentum, cos_theta)
    if asymmetry is None:
        asymmetry = model_asymmetry(mode, preset, z=z, q2=q2 or 1.0)
    given = efficiency if efficiency is not None else 1.0
    checks = (
        (flux > 0 and flux < math.inf, f"flux must be a positive rate (muons/s), got {flux!r}"),
        (0 < abs(asymmetry) < 1, f"asymmetry must be a non-zero fraction, got {asymmetry!r}"),
        (sigma > 0 and sigma < math.inf, f"sigma must be a positive number, got {sigma!r}"),
        (0 < polarization <= 1, f"polarization must lie in (0, 1], got {polarization!r}"),
        (0 < signal_fraction <= 1, f"signal fraction must lie in (0, 1], got {signal_fraction!r}"),
        (0 < given <= 1, f"efficiency must lie in (0, 1], got {efficiency!r}"),
    )
    for ok, message in checks:
        _require(ok, message)
    chain = efficiency_chain(mode, q2 or 1.0)
    if efficiency is None:
        efficiency = math.prod(chain.values())
    else:
        chain = {"given": efficiency}
    events = events_for_significance(asymmetry, sigma, polarization * signal_fraction)
    signal_events = events * signal_fraction
    muons = signal_events / efficiency
    seconds = muons / flux
    demo_efficiency = default_channel_map(mode).signal_efficiency
    return Plan(
        events=events,
        seconds=seconds,
        muons=muons,
        days=seconds / 86400.0,
        mode=mode,
        flux=flux,
        asymmetry=asymmetry,
        sigma=sigma,
        polarization=polarization,
        signal_fraction=signal_fraction,
        efficiency=efficiency,
        efficiency_chain=chain,
        z=z,
        q2=q2,
        signal_events=signal_events,
        preset=preset,
        momentum=momentum,
        cos_theta=cos_theta,
        demo_efficiency=demo_efficiency,
        demo_seconds=seconds * efficiency / demo_efficiency,
    )
