"""Sensitivity planner: events and running time to see an asymmetry at n_sigma.

Statistics: a counting asymmetry has sigma_A = 1/sqrt(N), and the measured asymmetry is
``P * D * A`` (polarization P, signal fraction D = S/(S+B), physics asymmetry A), so::

    events  N = (n_sigma / (P * D * A))^2
    seconds T = N / (Phi * efficiency)          (Phi: muons/s)

Efficiency chain (counted events per incident muon):

* ``afb`` (muonic atom, 2S->1S gamma):
  ``efficiency = P_ARC(2S) * B_1gamma * eps_gamma = 1e-6 * 1e-4 * 0.36 = 3.6e-11``

  - ``P_ARC(2S) = 1e-6``: atomic radiative capture into 2S in a thin Z ~ 30-36 target
    (talk: "approaches 1e-6");
  - ``B_1gamma = 1e-4``: share of 2S atoms that emit the single-photon 2S->1S (M1 + PV E1)
    line; assumed, not in the talk (it competes with two-photon decay and the muon's
    other 2S losses);
  - ``eps_gamma = 0.36``: forward + backward gamma detectors, solid angle (0.6) times
    full-energy efficiency (0.6); assumed.

  With P = D = 1 and n_sigma = 1 (the talk's ``N > 1/A^2``) this gives
  T = 1.1e8 s at Phi = 1e11/s for A_FB = 0.5e-4 (talk: ~1e8 s) and 2.8e5 s at
  Phi = 1e7/s for A = 0.1 (talk: ~3e5 s).  Only the product 3.6e-11 is fixed by the
  talk's numbers; the split between the last two factors is our assumption.
* ``alr`` (muon scattering): ``efficiency = P_scatter * eps_det`` with
  ``P_scatter = 1e-6 * (1 GeV^2 / Q^2)`` (talk: 1e-6 in 20 cm of graphite at Q^2 ~ 1 GeV^2;
  the cross section goes as 1/Q^2, ~100x larger at 0.01 GeV^2) and ``eps_det = 1``.  SM
  A_LR = 1e-4 at 1 GeV^2 needs N = 1e8 events, 1e14 muons; A = 1e-3 at 0.01 GeV^2 needs
  1e10 muons (both as in the talk).

``efficiency`` may be given directly to replace the chain.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from mupnc.monitor.analysis.statistics import events_for_significance
from mupnc.sim.detector import KRYPTON_Z, preset_asymmetry

ARC_2S_PROBABILITY = 1e-6
SINGLE_PHOTON_BRANCHING = 1e-4
GAMMA_DETECTION = 0.36
SCATTER_PROBABILITY_1GEV2 = 1e-6
SCATTER_DETECTION = 1.0
MODES = ("alr", "afb")


class PlanError(ValueError):
    """Planner inputs that make no sense; the message names the input."""


@dataclass(frozen=True)
class Plan:
    """A planner answer with its inputs (``seconds`` of beam at ``flux`` muons/s)."""

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

    def to_dict(self) -> dict:
        return asdict(self)


def efficiency_chain(mode: str, q2: float = 1.0) -> dict[str, float]:
    """The factors of the efficiency chain (module docstring) by name."""
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


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PlanError(message)


def plan(
    mode: str,
    *,
    flux: float = 1e11,
    asymmetry: float | None = None,
    sigma: float = 1.0,
    z: int | None = None,
    q2: float | None = None,
    polarization: float = 1.0,
    signal_fraction: float = 1.0,
    efficiency: float | None = None,
) -> Plan:
    """Events and running time for ``mode`` (``alr``/``afb``).

    ``asymmetry`` defaults to the SM preset (A_LR 1e-4; A_FB of nucleus ``z``, default
    krypton).  ``z`` applies to ``afb`` only, ``q2`` (GeV^2, default 1) to ``alr`` only.
    """
    _require(mode in MODES, f"mode must be one of {MODES}, got {mode!r}")
    _require(z is None or mode == "afb", "z (nuclear charge) applies to mode afb only")
    _require(q2 is None or mode == "alr", "q2 applies to mode alr only")
    if mode == "afb":
        z = KRYPTON_Z if z is None else z
        _require(
            isinstance(z, int) and 1 <= z <= 120, f"z must be an integer in [1, 120], got {z!r}"
        )
    else:
        q2 = 1.0 if q2 is None else q2
        _require(math.isfinite(q2) and q2 > 0, f"q2 must be a positive number (GeV^2), got {q2!r}")
    if asymmetry is None:
        asymmetry = preset_asymmetry(mode, "sm", KRYPTON_Z if z is None else z)
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
    muons = events / efficiency
    seconds = muons / flux
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
    )
