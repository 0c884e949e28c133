"""Projected running time to a target significance, from the live statistical error.

The statistical error of a counting asymmetry is ``sigma = 1/sqrt(N)``, so the live error
``sigma_now`` (physics asymmetry, polarization already divided out) is worth
``N_now = sigma_now**-2`` events, gathered in ``elapsed`` seconds.  The sensitivity planner
(:func:`mupnc.sim.planner.plan` with unit polarization and efficiency) gives the events
``N = (n_sigma / A)**2`` needed to see ``A`` at ``n_sigma``; at the beam so far that takes
``t_needed = elapsed * N / N_now = elapsed * (sigma_now / (|A| / n_sigma))**2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mupnc.dashboards.display import format_duration
from mupnc.sim.planner import PlanError, plan

DEFAULT_SIGNIFICANCE = 5.0


@dataclass(frozen=True)
class Projection:
    """Seconds needed in all and still remaining (same beam conditions as so far)."""

    needed: float
    remaining: float
    n_sigma: float
    asymmetry: float


def project(
    elapsed: float,
    sigma_now: float | None,
    asymmetry: float | None,
    mode: str = "alr",
    n_sigma: float = DEFAULT_SIGNIFICANCE,
) -> Projection | None:
    """Time to reach ``n_sigma`` on ``asymmetry`` (fraction) in ``mode``; None while the
    inputs do not allow it (no error yet, no asymmetry, nothing elapsed).

    ``elapsed`` is the time (s) in which ``sigma_now`` (fraction) was reached.
    """
    if sigma_now is None or asymmetry is None or not math.isfinite(sigma_now):
        return None
    if sigma_now <= 0 or elapsed <= 0:
        return None
    try:
        events = plan(mode, asymmetry=asymmetry, sigma=n_sigma, flux=1.0, efficiency=1.0).events
    except PlanError:
        return None
    needed = elapsed * events * sigma_now**2
    return Projection(needed, max(0.0, needed - elapsed), n_sigma, asymmetry)


def describe(projection: Projection | None) -> str:
    """One line for the result box."""
    if projection is None:
        return "insufficient data"
    goal = f"{projection.n_sigma:g} σ"
    if projection.remaining == 0:
        return f"{goal} reached"
    return f"{format_duration(projection.remaining)} more to {goal}"
