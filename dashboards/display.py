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
    """``value ± error unit`` (fractions in), rounded by :func:`round_to_error`; ``no result
    yet`` without a finite value and a positive finite error."""
    if value is None or error is None or not (math.isfinite(value) and math.isfinite(error)):
        return "no result yet"
    unit = unit or choose_unit(max(abs(value), error))
    return format_with_error(value * unit.scale, error * unit.scale, unit.name, signed=False)


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


PULL_COLOURS = ("white", "#ffe9a0", "#ffb0b0")
"""Cell backgrounds for |pull| < 2 (unremarkable: no colour), 2 to 3, and > 3; unknown
pulls stay white too."""


def pull_colours(pull: np.ndarray) -> list[str]:
    """Background colour per pull: white below 2 and if NaN (colour only for what is
    remarkable), amber below 3, red from 3."""
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


ERROR_DIGITS = 2
"""Significant digits of a printed error (:func:`round_to_error`)."""


def round_to_error(value: float | None, error: float | None) -> tuple[str, str] | None:
    """``value`` and ``error`` as text, both rounded to the decimal place of the error's
    second significant digit; None when either is unknown, NaN or infinite, or the error is
    not positive (no digit of the value is then meaningful: never a fake precision).

    The rule is two significant digits of the error, always (``866.642`` → ``870``, so
    ``-1304.490 ± 866.642`` → ``-1300 ± 870``; ``0.01234`` → ``0.012``; ``9.96`` →
    ``10``).  Not the PDG's rule (one digit for errors whose leading three digits are 355
    to 949, two otherwise): an online error shrinks continuously, and the PDG rule would
    make the printed precision jump back and forth as it crosses 355 and 949, while two
    digits keep the relative rounding of the error below 5 %.
    """
    if value is None or error is None or not (math.isfinite(value) and math.isfinite(error)):
        return None
    if error <= 0:
        return None
    place = math.floor(math.log10(error)) - (ERROR_DIGITS - 1)
    if round(error, -place) >= 10 ** (place + ERROR_DIGITS):  # 9.96 -> 10: one place up
        place += 1
    decimals = max(0, -place)
    rounded_error = round(error, -place)
    rounded_value = round(value, -place) + 0.0  # + 0.0: no "-0"
    return f"{rounded_value:.{decimals}f}", f"{rounded_error:.{decimals}f}"


def format_significant(value: float, digits: int = 2) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation (``360``,
    ``1000``, ``0.0012``); ``?`` if not finite."""
    if not math.isfinite(value):
        return "?"
    if value == 0:
        return "0"
    place = math.floor(math.log10(abs(value))) - (digits - 1)
    return f"{round(value, -place) + 0.0:.{max(0, -place)}f}"


def format_with_error(
    value: float | None,
    error: float | None,
    unit: str,
    signed: bool = True,
    undefined: str = "undefined",
) -> str:
    """``value ± error unit`` of a number already in ``unit``, rounded by
    :func:`round_to_error`, the value with its sign (``+`` too) when ``signed``;
    ``undefined`` without a finite value and a positive finite error."""
    rounded = round_to_error(value, error)
    if rounded is None:
        return undefined
    shown, shown_error = rounded
    if signed and not shown.startswith("-") and float(shown) != 0:
        shown = "+" + shown
    return f"{shown} ± {shown_error} {unit}".rstrip()


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


IDLE = "idle"
"""A feed that is quiet because no run is live (nothing to archive), not because it failed."""
LIVE_RUN_STATES = ("starting", "running")


def run_is_live(state: str | None) -> bool:
    """Whether a run in ``state`` is being taken (a monitor archives its slow controls)."""
    return state in LIVE_RUN_STATES


BEAM_ON, BEAM_OFF, BEAM_TRIPPED, BEAM_UNKNOWN = "on", "off", "tripped", "unknown"
BEAM_COLOURS = {BEAM_ON: "#1a7f1a", BEAM_OFF: "#555", BEAM_TRIPPED: "#c00000"}
"""Badge colour per beam state (unknown: grey)."""


def beam_state(switch: float | None, trip: float | None) -> str:
    """The beam's state from the archived enum indices of ``BEAM:ON`` (0 OFF, 1 ON) and
    ``BEAM:TRIP`` (0 OK, 1 TRIPPED), as the monitor's ``beam.on_for`` alarm input reads them.

    ``off`` when the switch is OFF (the trip readback then shows no beam too, but nothing
    tripped: an operator switched it off), else ``tripped`` when the trip status is
    TRIPPED, else ``on`` when the switch is ON or, unarchived, the trip status is OK;
    ``unknown`` when neither PV was archived (a DAQ that serves neither)."""
    if switch is not None and round(switch) == 0:
        return BEAM_OFF
    if trip is not None and round(trip) == 1:
        return BEAM_TRIPPED
    if (switch is not None and round(switch) == 1) or (trip is not None and round(trip) == 0):
        return BEAM_ON
    return BEAM_UNKNOWN


def format_rate(hertz: float | None) -> str:
    """A particle rate for people: ``98.7 MHz``, ``240 Hz``, ``1.2 kHz``; ``?`` if unknown."""
    if hertz is None or not math.isfinite(hertz):
        return "?"
    for scale, name in ((1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz")):
        if abs(hertz) >= scale:
            return f"{hertz / scale:.3g} {name}"
    return f"{hertz:.3g} Hz"


def seconds_to_patterns(patterns_now: int, elapsed: float, target: float) -> float | None:
    """Seconds until ``target`` good patterns at the rate so far (``patterns_now`` in
    ``elapsed`` s); 0 once reached, None while no pattern has come (no rate yet)."""
    if patterns_now >= target:
        return 0.0
    if patterns_now <= 0 or elapsed <= 0:
        return None
    return (target - patterns_now) * elapsed / patterns_now
