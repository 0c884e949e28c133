"""Projected running time to a target significance, from the live statistical error.

The statistical error of a counting asymmetry is ``sigma = 1/sqrt(N)``, so the live error
``sigma_now`` (physics asymmetry, polarization already divided out) is worth
``N_now = sigma_now**-2`` events, gathered in ``elapsed`` seconds.  Counting statistics
(:func:`mupnc.monitor.analysis.statistics.events_for_significance`, as the planner ``mupnc
plan``) give the events ``N = (n_sigma / A)**2`` needed to see ``A`` at ``n_sigma``
(``0 < |A| < 1``); at the beam so far that takes
``t_needed = elapsed * N / N_now = elapsed * (sigma_now / (|A| / n_sigma))**2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mupnc.dashboards.display import Unit, format_duration, format_significant
from mupnc.monitor.analysis.statistics import events_for_significance

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
    n_sigma: float = DEFAULT_SIGNIFICANCE,
) -> Projection | None:
    """Time to reach ``n_sigma`` on ``asymmetry`` (fraction); None while the
    inputs do not allow it (no error yet, no asymmetry, nothing elapsed).

    ``elapsed`` is the time (s) in which ``sigma_now`` (fraction) was reached.
    """
    if sigma_now is None or asymmetry is None or not math.isfinite(sigma_now):
        return None
    if sigma_now <= 0 or elapsed <= 0 or not 0 < abs(asymmetry) < 1 or not n_sigma > 0:
        return None
    events = events_for_significance(asymmetry, n_sigma)
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


def basis(
    elapsed: float, sigma_now: float | None, asymmetry: float | None, of: str, unit: Unit
) -> str:
    """What a projection is computed from, for the line under it: the live error reached in
    ``elapsed`` s and the asymmetry it projects (``of``: where that comes from, e.g. "the
    injected value" or "the measured value"), in ``unit``."""
    if sigma_now is None or asymmetry is None or not math.isfinite(sigma_now):
        return "needs a live error and an asymmetry to project"
    return (
        f"from σ = {format_significant(sigma_now * unit.scale)} {unit.name} after"
        f" {format_duration(elapsed)}; for A = {format_significant(asymmetry * unit.scale)}"
        f" {unit.name} ({of}), σ ∝ 1/√t"
    )
