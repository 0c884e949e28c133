"""Projected running time to a target significance, from the live statistical error.

The statistical error of a counting measurement falls as 1/sqrt(t) at constant beam, so a
run that reached ``sigma_now`` after ``elapsed`` seconds needs in all
``t_needed = elapsed * (sigma_now / sigma_target)**2`` with ``sigma_target = |A| / n_sigma``
to see an asymmetry ``A`` at ``n_sigma`` standard deviations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dashboards.display import format_duration

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
    """Time to reach ``n_sigma`` on ``asymmetry`` (fraction); None while there is no error yet.

    ``elapsed`` is the time (s) in which ``sigma_now`` (fraction) was reached.
    """
    if (
        sigma_now is None
        or asymmetry is None
        or not math.isfinite(sigma_now)
        or sigma_now <= 0
        or asymmetry == 0
        or elapsed <= 0
    ):
        return None
    target = abs(asymmetry) / n_sigma
    needed = elapsed * (sigma_now / target) ** 2
    return Projection(needed, max(0.0, needed - elapsed), n_sigma, asymmetry)


def describe(projection: Projection | None) -> str:
    """One line for the result box."""
    if projection is None:
        return "insufficient data"
    goal = f"{projection.n_sigma:g} σ"
    if projection.remaining == 0:
        return f"{goal} reached"
    return f"{format_duration(projection.remaining)} more to {goal}"
