"""Pure display logic of the dashboards: units, plot ranges, pulls, staleness, durations.

Asymmetries come in as plain fractions; a :class:`Unit` turns them into numbers for the eye
(``%``, ``ppm`` or ``ppb``).  Nothing here knows of Bokeh or SQL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Unit:
    """A display unit for asymmetries: ``value_in_unit = fraction * scale``."""

    name: str
    scale: float


PERCENT, PPM, PPB = Unit("%", 1e2), Unit("ppm", 1e6), Unit("ppb", 1e9)
UNITS = (PERCENT, PPM, PPB)
_COARSEST_AT = {PERCENT: 1e-2, PPM: 1e-6, PPB: 0.0}
"""Fresh choice: the coarsest unit whose threshold the magnitude reaches (1 % and 1 ppm)."""
_KEEP = (0.3, 3e4)
"""Hysteresis: a current unit stays while the magnitude reads between these numbers in it."""


def choose_unit(magnitude: float, current: Unit | None = None) -> Unit:
    """The unit for numbers of size ``magnitude`` (fraction): % from 1e-2, ppm from 1e-6, else ppb.

    With a ``current`` unit the choice is sticky: it is kept while ``magnitude`` reads between
    0.3 and 30000 in it, so a converging run does not flip units back and forth.
    """
    magnitude = abs(magnitude)
    if not math.isfinite(magnitude) or magnitude == 0:
        return current or PPM
    if current is not None:
        shown = magnitude * current.scale
        if (shown >= _KEEP[0] or current is PPB) and (shown < _KEEP[1] or current is PERCENT):
            return current
    return next(u for u in UNITS if magnitude >= _COARSEST_AT[u])


def magnitude(values: Iterable[float | None]) -> float:
    """Largest finite absolute value among ``values`` (0 if none)."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0)


def format_asymmetry(value: float | None, error: float | None, unit: Unit | None = None) -> str:
    """``value ± error unit`` (fractions in), rounded to two significant digits of the error."""
    if value is None or error is None or not (math.isfinite(value) and math.isfinite(error)):
        return "no result yet"
    unit = unit or choose_unit(max(abs(value), error))
    v, e = value * unit.scale, error * unit.scale
    digits = max(0, 1 - math.floor(math.log10(e))) if e > 0 else 2
    return f"{v:.{digits}f} ± {e:.{digits}f} {unit.name}"


def y_range(
    lower: Sequence[float] | np.ndarray,
    upper: Sequence[float] | np.ndarray,
    lines: Iterable[float | None] = (),
    pad: float = 0.06,
) -> tuple[float, float]:
    """Start and end of a y axis showing every error bar ``[lower, upper]`` and every line.

    Non-finite entries and ``None`` lines are ignored; ``pad`` is the fraction of the span
    added on each side.  With nothing to show, or a zero span, the range is ±1 about it.
    """
    points = np.concatenate(
        [
            np.asarray(lower, dtype=float),
            np.asarray(upper, dtype=float),
            np.array([x for x in lines if x is not None], dtype=float),
        ]
    )
    points = points[np.isfinite(points)]
    if points.size == 0:
        return -1.0, 1.0
    low, high = float(points.min()), float(points.max())
    span = high - low
    if span == 0:
        return low - 1.0, high + 1.0
    return low - pad * span, high + pad * span


def settled(x: np.ndarray, fraction: float, minimum: int = 10) -> np.ndarray:
    """Mask of the points after the first ``fraction`` of the span of ``x`` (all points while
    there are at most ``minimum``): running errors fall as 1/sqrt(t), so the earliest error
    bars would otherwise set the scale of a whole run."""
    x = np.asarray(x, dtype=float)
    if len(x) <= minimum:
        return np.ones(len(x), dtype=bool)
    return x >= x[0] + fraction * (x[-1] - x[0])


def pulls(values: np.ndarray, errors: np.ndarray, expected: np.ndarray | float = 0.0) -> np.ndarray:
    """``(value - expected) / error``; NaN where the error is not positive or anything unknown."""
    values, errors = np.asarray(values, dtype=float), np.asarray(errors, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(errors > 0, (values - expected) / errors, np.nan)


PULL_COLOURS = ("#c8efc8", "#ffe9a0", "#ffb0b0")
"""Cell backgrounds for |pull| < 2, 2 to 3, and > 3; unknown pulls stay white."""


def pull_colours(pull: np.ndarray) -> list[str]:
    """Background colour per pull: green below 2, amber below 3, red from 3, white if NaN."""
    size = np.abs(np.asarray(pull, dtype=float))
    return [
        "white" if not math.isfinite(p) else PULL_COLOURS[0 if p < 2 else 1 if p < 3 else 2]
        for p in size
    ]


def minirun_pulls(values: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Pulls of minirun means about their weighted mean, each corrected for its own weight.

    ``(A_i - <A>) / sqrt(sigma_i**2 - sigma_mean**2)``: unit Gaussian for consistent
    miniruns.  Miniruns without a positive error are dropped; fewer than two give none.
    """
    values, errors = np.asarray(values, dtype=float), np.asarray(errors, dtype=float)
    good = np.isfinite(values) & np.isfinite(errors) & (errors > 0)
    values, errors = values[good], errors[good]
    if values.size < 2:
        return np.empty(0)
    weights = errors**-2
    mean = float(np.sum(weights * values) / np.sum(weights))
    variance = errors**2 - 1.0 / np.sum(weights)
    return (values - mean) / np.sqrt(variance)


PULL_EDGES = np.linspace(-5.0, 5.0, 21)
"""Fixed bins of the pull histogram (width 0.5); pulls beyond ±5 fill the outer bins."""


def pull_histogram(pull: np.ndarray, edges: np.ndarray = PULL_EDGES) -> np.ndarray:
    """Counts of ``pull`` per bin of ``edges``; pulls outside land in the outer bins."""
    clipped = np.clip(pull, edges[0] + 1e-9, edges[-1] - 1e-9)
    return np.histogram(clipped, bins=edges)[0]


def unit_gaussian(x: np.ndarray, n: int, bin_width: float) -> np.ndarray:
    """Expected entries per bin of width ``bin_width`` at ``x`` for ``n`` unit-Gaussian pulls."""
    return n * bin_width * np.exp(-0.5 * np.asarray(x) ** 2) / math.sqrt(2 * math.pi)


LIVE, STALE, LOST, NO_DATA = "live", "stale", "lost", "no data"


def freshness(age: float | None, stale_after: float, lost_after: float) -> str:
    """State of a feed whose newest datum is ``age`` seconds old (None: never any).

    ``live`` below ``stale_after``, ``stale`` below ``lost_after``, else ``lost``.
    """
    if age is None:
        return NO_DATA
    if age < stale_after:
        return LIVE
    return STALE if age < lost_after else LOST


def format_age(age: float | None) -> str:
    """``never``, ``4 s ago``, ``3 min ago``, ``2.5 h ago``."""
    if age is None:
        return "never"
    return f"{format_duration(max(0.0, age))} ago"


def format_duration(seconds: float) -> str:
    """A duration for people: ``42 s``, ``12 min``, ``3.4 h``, ``5.1 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_with_error(value: float | None, error: float | None, unit: str) -> str:
    """``value ± error unit`` of a number already in ``unit``, to two significant digits of
    the error (``undefined`` without a finite value and error)."""
    if value is None or error is None or not (math.isfinite(value) and math.isfinite(error)):
        return "undefined"
    digits = max(0, 1 - math.floor(math.log10(error))) if error > 0 else 2
    return f"{value:+.{digits}f} ± {error:.{digits}f} {unit}"


def format_setpoint(value: float) -> str:
    """A setpoint to four significant digits, whole numbers from 1000 on: ``-998.8``,
    ``+3000``, ``+1.235``, ``0``."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    digits = min(4, max(0, 3 - math.floor(math.log10(abs(value)))))
    return f"{value:+.{digits}f}"


FEEDBACK_MODES = {
    "off": ("OFF", "#777"),
    "dry_run": ("DRY RUN", "#b07800"),
    "on": ("ON", "#1a7f1a"),
}
"""A feedback loop's mode -> its label and badge colour."""
