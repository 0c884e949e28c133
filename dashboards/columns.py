"""Pure builders of the dashboards' data columns from feed records (numpy, no Bokeh).

Times are seconds since the run start; asymmetries are multiplied by a display
:class:`~mupnc.dashboards.display.Unit`; rates are in Hz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from mupnc.daq.beamline import DISPLAY, SLOPE_DISPLAY
from mupnc.daq.scheme import SCHEMES, Scheme
from mupnc.dashboards.display import (
    FEEDBACK_MODES,
    PPM,
    Unit,
    format_duration,
    format_setpoint,
    format_with_error,
    pull_colours,
    pulls,
    seconds_to_patterns,
)
from mupnc.dashboards.records import (
    CHARGE,
    COMBINED,
    FEEDBACK_INPUT_UNITS,
    SETPOINT_UNITS,
    BeamDifference,
    Channel,
    DitherSlope,
    FeedbackDecision,
    FeedbackLoop,
    MinirunMean,
    Modulation,
    RunInfo,
    Sample,
    Slope,
    Snapshot,
)
from mupnc.monitor.analysis.blinding import ANALYZING_SIGN
from mupnc.monitor.analysis.statistics import pulled_miniruns
from mupnc.monitor.decoding import minirun_length

NULL_PREFIX = "null_"
"""Null asymmetries (``null_half``, ``null_even_odd``) are expected at zero, like the charge
asymmetry and any row whose role has no :data:`ANALYZING_SIGN`."""


ASYMMETRY_KEYS = ("x", "y", "lo", "hi")
CHARGE_KEYS = ("x", "charge")
RATE_KEYS = ("x", "window_rate", "good_rate")
SAMPLE_KEYS = ("x", "value")

RATE_BIN_SECONDS = 5.0
"""The window-rate strip's bin: at the 10-minute strip's width a few pixels, and long
enough that blocks arriving in bursts (10-30 per second) do not show as rate spikes."""
INTERVAL_SECONDS = 30.0
"""Per-interval asymmetry points: the asymmetry of the data of each this many seconds."""


def _seconds(snapshots: Sequence[Snapshot], start: datetime) -> np.ndarray:
    return np.array([(s.time - start).total_seconds() for s in snapshots], dtype=float)


def asymmetry_columns(
    snapshots: Sequence[Snapshot], start: datetime, unit: Unit
) -> dict[str, np.ndarray]:
    """Running asymmetry ``y`` with its error bar ``lo``..``hi`` versus time ``x``.

    Snapshots without a value or error (early in a run) are left out.
    """
    usable = [s for s in snapshots if s.value is not None and s.error is not None]
    y = np.array([s.value for s in usable], dtype=float) * unit.scale
    e = np.array([s.error for s in usable], dtype=float) * unit.scale
    return {"x": _seconds(usable, start), "y": y, "lo": y - e, "hi": y + e}


def regressed_columns(
    snapshots: Sequence[Snapshot], start: datetime, unit: Unit
) -> dict[str, np.ndarray]:
    """The running regressed asymmetry as :func:`asymmetry_columns` gives the raw one."""
    usable = [s for s in snapshots if s.regressed is not None and s.regressed_error is not None]
    y = np.array([s.regressed for s in usable], dtype=float) * unit.scale
    e = np.array([s.regressed_error for s in usable], dtype=float) * unit.scale
    return {"x": _seconds(usable, start), "y": y, "lo": y - e, "hi": y + e}


def with_errors(
    values: Sequence[float] | np.ndarray, errors: Sequence[float] | np.ndarray
) -> list[str]:
    """``value ± error`` per row (numbers already in their unit, signed), rounded by
    :func:`~mupnc.dashboards.display.round_to_error`; ``–`` where undefined."""
    return [
        format_with_error(float(v), float(e), "", undefined="–")
        for v, e in zip(values, errors, strict=True)
    ]


BEAM_DIFFERENCE_KEYS = ("variable", "value", "error", "shown", "width", "unit", "pull")


def beam_difference_columns(differences: Sequence[BeamDifference]) -> dict[str, list]:
    """The beam panel's table: each variable's difference, error and width in the unit a
    shift reads (nm, nrad, ppb), the difference ± error as text rounded to the error
    (``shown``) and the difference in its errors (``pull``; NaN undefined)."""
    out: dict[str, list] = {k: [] for k in BEAM_DIFFERENCE_KEYS}
    nan = float("nan")
    for d in differences:
        unit, factor = DISPLAY.get(d.variable, (d.unit, 1.0))
        value = nan if d.value is None else d.value * factor
        error = nan if d.error is None else d.error * factor
        out["variable"].append(d.variable)
        out["value"].append(value)
        out["error"].append(error)
        out["width"].append(nan if d.width is None else d.width * factor)
        out["unit"].append(unit)
        out["pull"].append(value / error if error and error > 0 else nan)
    out["shown"] = with_errors(out["value"], out["error"])
    return out


def slope_columns(slopes: Sequence[Slope], variable: str) -> dict[str, np.ndarray]:
    """Slopes on one variable by minirun (``x``) with error bars, in the unit a shift reads
    (:data:`mupnc.daq.beamline.SLOPE_DISPLAY`); undefined slopes are left out."""
    factor = SLOPE_DISPLAY[variable][1]
    usable = [
        s for s in slopes if s.variable == variable and s.value is not None and s.error is not None
    ]
    y = np.array([s.value for s in usable], dtype=float) * factor
    e = np.array([s.error for s in usable], dtype=float) * factor
    x = np.array([s.minirun for s in usable], dtype=float)
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


def charge_columns(
    snapshots: Sequence[Snapshot], start: datetime, unit: Unit
) -> dict[str, np.ndarray]:
    """The running beam charge asymmetry (NaN when unknown) of every snapshot."""
    charge = [math.nan if s.charge_asymmetry is None else s.charge_asymmetry for s in snapshots]
    return {"x": _seconds(snapshots, start), "charge": np.array(charge, dtype=float) * unit.scale}


def bin_edges(snapshots: Sequence[Snapshot], opened: datetime, seconds: float) -> list[Snapshot]:
    """The snapshots that close bins of at least ``seconds``, the first bin opened at
    ``opened``, each next one by the snapshot that closed the one before."""
    edges = []
    for s in snapshots:
        if (s.time - opened).total_seconds() >= seconds:
            edges.append(s)
            opened = s.time
    return edges


def rate_columns(
    edges: Sequence[Snapshot], start: datetime, pattern_windows: int | None
) -> dict[str, np.ndarray]:
    """Decoded and good window rates (Hz) over each bin between consecutive ``edges``
    (:func:`bin_edges`), at the bin's middle; ``pattern_windows``: DAQ windows per pattern
    (:attr:`RunInfo.pattern_windows`; good windows unknown without it)."""
    if len(edges) < 2:
        return {k: np.empty(0) for k in RATE_KEYS}
    t = _seconds(edges, start)
    dt = np.diff(t)
    windows = np.diff([s.windows for s in edges]).astype(float)
    size = pattern_windows or math.nan
    good = np.diff([s.patterns_good for s in edges]).astype(float) * size
    return {"x": (t[1:] + t[:-1]) / 2, "window_rate": windows / dt, "good_rate": good / dt}


def outlier_columns(x: np.ndarray, rate: np.ndarray, top: float) -> dict[str, list]:
    """The rate bins above the strip's axis (``top``, Hz), flagged at its top edge with
    their rate as text (a catch-up burst after a pause must not squash the trace)."""
    beyond = np.isfinite(rate) & (rate > top)
    return {
        "x": list(np.asarray(x)[beyond]),
        "y": [0.97 * top] * int(beyond.sum()),
        "text": [f"{r:.0f} Hz" for r in rate[beyond]],
    }


def interval_columns(
    opener: Snapshot | None, edges: Sequence[Snapshot], start: datetime, unit: Unit
) -> dict[str, np.ndarray]:
    """The asymmetry of the data between consecutive cumulative results: ``opener`` (None:
    the run start, nothing before it) and the ``edges`` (:func:`bin_edges`) after it.  With
    weights ``w = 1/σ²``, ``A = (w₂A₂ − w₁A₁)/(w₂ − w₁)`` and ``σ = (w₂ − w₁)^-½`` — exact
    for an inverse-variance mean and, as ``σ² ∝ 1/N``, for the counting estimators.
    Independent points, unlike the cumulative ones, at each interval's middle; an interval
    whose weight did not grow is left out.  Every snapshot given must have a value."""
    chain = ([] if opener is None else [opener]) + list(edges)
    t = _seconds(chain, start)
    value, error = np.array([(s.value, s.error) for s in chain], dtype=float).reshape(-1, 2).T
    w = 1 / error**2
    wa = value * w
    if opener is None:
        t, w, wa = (np.concatenate([[0.0], v]) for v in (t, w, wa))
    dw = np.diff(w)
    grew = dw > 0
    y = np.diff(wa)[grew] / dw[grew] * unit.scale
    e = unit.scale / np.sqrt(dw[grew])
    x = ((t[1:] + t[:-1]) / 2)[grew]
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


def sample_columns(
    samples: Sequence[Sample], start: datetime, scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Slow-control samples: ``value`` × ``scale`` (NaN when undefined) versus time ``x``."""
    x = np.array([(s.time - start).total_seconds() for s in samples], dtype=float)
    value = np.array([math.nan if s.value is None else s.value for s in samples], dtype=float)
    return {"x": x, "value": value * scale}


def channel_columns(
    channels: Sequence[Channel],
    roles: dict[str, str],
    unit: Unit,
    shape: dict[str, float] | None = None,
) -> dict[str, list | np.ndarray]:
    """Per-channel table: value and error in ``unit``, ``value ± error`` as text rounded to
    the error (``shown``), and the pull against expectation.

    A detector channel c is expected to see ``ANALYZING_SIGN[role] * shape[c] * A_0`` with
    ``A_0 = A_combined / <shape>`` (the inverse-variance mean of ``shape`` over the scatter
    channels, which the combined A_LR averages; 1 without a shape, and for A_FB); the
    charge asymmetry, monitor channels and null asymmetries (``null_*``, role ``null``) are
    expected at zero.  The combined row has no pull (its significance is in the result box).
    """
    shape = shape or {}
    combined = next((c for c in channels if c.name == COMBINED), None)
    a = combined.value if combined is not None and combined.value is not None else math.nan
    value = np.array([math.nan if c.value is None else c.value for c in channels], dtype=float)
    error = np.array([math.nan if c.error is None else c.error for c in channels], dtype=float)
    role = [roles.get(c.name) or _role(c.name) for c in channels]
    relative = np.array([shape.get(c.name, 1.0) for c in channels], dtype=float)
    weight = np.zeros(len(channels))
    scatter = np.array([r == "scatter" for r in role], dtype=bool)
    usable = scatter & np.isfinite(error) & (error > 0)
    weight[usable] = error[usable] ** -2.0
    mean_shape = float(weight @ relative / weight.sum()) if weight.sum() > 0 else 1.0
    sign = np.array([ANALYZING_SIGN.get(r, 0.0) for r in role])
    expected = np.where([r == COMBINED for r in role], math.nan, sign * relative * a / mean_shape)
    pull = pulls(value, error, expected)
    return {
        "channel": [c.name for c in channels],
        "role": role,
        "value": value * unit.scale,
        "error": error * unit.scale,
        "shown": with_errors(value * unit.scale, error * unit.scale),
        "pull": pull,
        "colour": pull_colours(pull),
    }


def _role(name: str) -> str:
    if name in (COMBINED, CHARGE):
        return name
    return "null" if name.startswith(NULL_PREFIX) else "?"


def completed_miniruns(miniruns: Sequence[MinirunMean], running: bool) -> list[MinirunMean]:
    """Miniruns for the pull histogram: all but the newest of a running run (it is still
    filling), and none holding less than half the patterns of the fullest (an ended run's
    short last one), as the monitor's chi2/ndf
    (:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`)."""
    ordered = sorted(miniruns, key=lambda m: m.index)
    done = ordered[:-1] if running else ordered
    if not done:
        return []
    patterns = np.array([m.patterns_good for m in done])
    kept = pulled_miniruns(patterns, int(patterns.max()))
    return [m for m, keep in zip(done, kept, strict=True) if keep]


CHI2_MINIRUNS = 1.5
"""Miniruns of good patterns before the monitor's chi2/ndf exists: two miniruns holding at
least half a minirun each (:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`)."""
PULL_MINIRUNS = 2.0
"""Miniruns of good patterns before the pull histogram has entries: two complete ones
(:func:`completed_miniruns` leaves the filling one out)."""


def minirun_patterns(run: RunInfo, miniruns: Sequence[MinirunMean]) -> int:
    """Good patterns per minirun: the fullest completed minirun's, else the scheme's default
    length (:func:`mupnc.monitor.decoding.minirun_length`; a monitor started with another
    length shows it from its first complete minirun on)."""
    done = sorted(miniruns, key=lambda m: m.index)[:-1]
    if done:
        return max(m.patterns_good for m in done)
    return minirun_length(run.scheme if run.scheme in SCHEMES else Scheme.FAST)


def chi2_miniruns(run: RunInfo, miniruns: Sequence[MinirunMean]) -> str:
    """Which miniruns χ²/ndf is over: every one holding half a minirun's good patterns
    (:func:`mupnc.monitor.analysis.statistics.pulled_miniruns`), the one being filled too
    once it does: ``4 miniruns, the newest still filling``."""
    length = minirun_patterns(run, miniruns)
    entered = [m for m in sorted(miniruns, key=lambda m: m.index) if 2 * m.patterns_good >= length]
    filling = (
        run.state == "running" and entered and entered[-1].index == max(m.index for m in miniruns)
    )
    return f"{len(entered)} miniruns" + (", the newest still filling" if filling else "")


def pending_text(
    run: RunInfo, miniruns: Sequence[MinirunMean], latest: Snapshot | None, needed: float
) -> str:
    """Why a minirun statistic is not there yet and for how long: ``pending · ~1.2 min more
    (needs 2 miniruns of 9,000 good patterns)`` at the good-pattern rate so far; for an
    ended run, ``none (fewer than ... miniruns)``."""
    length = minirun_patterns(run, miniruns)
    reason = f"{needed:g} miniruns of {length:,} good patterns"
    if run.state not in ("starting", "running"):
        return f"none (the run ended before {reason})"
    if latest is None:
        return f"pending (needs {reason})"
    elapsed = (latest.time - run.start).total_seconds()
    wait = seconds_to_patterns(latest.patterns_good, elapsed, needed * length)
    if wait is None:
        return f"pending (needs {reason}; no good pattern yet)"
    return f"pending · ~{format_duration(wait)} more (needs {reason})"


def minirun_columns(miniruns: Sequence[MinirunMean], unit: Unit) -> dict[str, np.ndarray]:
    """Per-minirun combined asymmetry ``y`` ± error (``lo``..``hi``) versus index ``x``."""
    usable = [m for m in miniruns if m.value is not None and m.error is not None]
    y = np.array([m.value for m in usable], dtype=float) * unit.scale
    e = np.array([m.error for m in usable], dtype=float) * unit.scale
    x = np.array([m.index for m in usable], dtype=float)
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


def good_beam_seconds(run: RunInfo, patterns_good: int) -> float | None:
    """Beam time in good patterns: patterns × windows per pattern / window rate (s)."""
    if not run.window_rate or run.pattern_windows is None:
        return None
    return patterns_good * run.pattern_windows / run.window_rate


def decoder_state(previous: Snapshot | None, latest: Snapshot | None, run_state: str) -> str:
    """The helicity decoder: as the monitor reports it (``locked``, ``unlocked``,
    ``learning · N windows held``), else as seen from the last two snapshots —
    ``locked``: good patterns grow; ``not locked``: windows arrive without good patterns;
    ``no new windows``: nothing arrived; ``waiting``: no snapshot pair yet.
    """
    if run_state in ("ended", "aborted"):
        return f"run {run_state}"
    if latest is not None and latest.decoder is not None:
        held = f" · {latest.windows_held:,} windows held" if latest.windows_held else ""
        return latest.decoder.lower() + held
    if previous is None or latest is None:
        return "waiting"
    if latest.patterns_good > previous.patterns_good:
        return "locked"
    if latest.windows > previous.windows:
        return "not locked"
    return "no new windows"


# --- feedback ------------------------------------------------------------------------------------

DECISION_ROWS = 10
"""Decisions in the feedback table (the newest)."""
DECISION_KEYS = (
    "time", "loop", "actuator", "input", "value", "error", "setpoint", "before", "after",
    "state", "colour", "reason",
)  # fmt: skip
SETPOINT_KEYS = ("x", "y", "proposed", "colour")
DECISION_COLOURS = {
    "saturated": "#ffb0b0",
    "dry run": "#ffe9a0",
    "applied": "#c8efc8",
    "no change": "white",
}
"""Cell background of a decision's state (saturated wins over dry run)."""


def decision_state(decision: FeedbackDecision) -> tuple[str, str]:
    """A decision in words and its cell colour: ``applied``, ``dry run`` (computed, not
    written; ``dry run · no change`` if it would not have changed the setpoint) or ``no
    change`` (error too large, dead band, write refused), with ``· SATURATED`` when held at
    the clamp."""
    text = "dry run" if decision.dry_run else "applied" if decision.acted else "no change"
    colour = DECISION_COLOURS[text]
    if decision.dry_run and not decision.acted:
        text += " · no change"
    if decision.saturated:
        text, colour = text + " · SATURATED", DECISION_COLOURS["saturated"]
    return text, colour


def decision_columns(
    decisions: Sequence[FeedbackDecision], rows: int = DECISION_ROWS
) -> dict[str, list]:
    """The feedback table: the newest ``rows`` decisions, newest first; time of day (UTC),
    the input ``value ± error`` and the setpoint ``before → after`` with their units (and
    the numbers, NaN undefined), the state (:func:`decision_state`) and the reason."""
    out: dict[str, list] = {k: [] for k in DECISION_KEYS}
    nan = float("nan")
    for d in list(decisions)[::-1][:rows]:
        unit = FEEDBACK_INPUT_UNITS.get(d.loop, "?")
        setpoint_unit = SETPOINT_UNITS.get(d.actuator, "?")
        state, colour = decision_state(d)
        out["time"].append(f"{d.time:%H:%M:%S}")
        out["loop"].append(d.loop)
        out["actuator"].append(d.actuator)
        out["input"].append(format_with_error(d.value, d.error, unit))
        out["value"].append(nan if d.value is None else d.value)
        out["error"].append(nan if d.error is None else d.error)
        out["setpoint"].append(
            f"{format_setpoint(d.before)} → {format_setpoint(d.after)} {setpoint_unit}"
        )
        out["before"].append(d.before)
        out["after"].append(d.after)
        out["state"].append(state)
        out["colour"].append(colour)
        out["reason"].append(d.reason)
    return out


SETPOINT_MARKERS = {"applied": "#1f77b4", "dry run": "white", "saturated": "#c00000"}
"""Marker fill of a decision on the setpoint plot: applied (or no change), dry run (hollow:
the setpoint it would have set), saturated."""


def setpoint_columns(
    decisions: Sequence[FeedbackDecision], start: datetime, actuator: str, leading: bool
) -> dict[str, np.ndarray | list]:
    """``actuator``'s setpoint history versus time since ``start`` (s): ``y`` the setpoint
    the actuator holds after each decision (a dry run's is unchanged), ``proposed`` the one
    the decision computed, ``colour`` its marker (:data:`SETPOINT_MARKERS`).  With
    ``leading`` (the first decisions shown) a point at ``x = 0`` holds the setpoint the
    first one found."""
    mine = [d for d in decisions if d.actuator == actuator]
    x = [(d.time - start).total_seconds() for d in mine]
    y = [d.applied for d in mine]
    proposed = [d.after for d in mine]
    colour = [
        SETPOINT_MARKERS["saturated" if d.saturated else "dry run" if d.dry_run else "applied"]
        for d in mine
    ]
    if leading and mine:
        x, y = [0.0, *x], [mine[0].before, *y]
        proposed, colour = [mine[0].before, *proposed], [SETPOINT_MARKERS["applied"], *colour]
    return {
        "x": np.array(x, dtype=float),
        "y": np.array(y, dtype=float),
        "proposed": np.array(proposed, dtype=float),
        "colour": colour,
    }


def _defined_charge_input(d: FeedbackDecision) -> bool:
    return (
        d.loop == CHARGE
        and d.value is not None
        and d.error is not None
        and math.isfinite(d.value)
        and math.isfinite(d.error)
    )


def feedback_input_columns(
    decisions: Sequence[FeedbackDecision], start: datetime, unit: Unit
) -> dict[str, np.ndarray]:
    """The charge loop's inputs (the charge asymmetry over each decision's window, ppm) in
    ``unit`` with error bars ``lo``..``hi`` versus time since ``start`` (s), as
    :func:`asymmetry_columns` gives the running asymmetry; undefined inputs left out."""
    usable = [d for d in decisions if _defined_charge_input(d)]
    scale = unit.scale / PPM.scale
    y = np.array([d.value for d in usable], dtype=float) * scale
    e = np.array([d.error for d in usable], dtype=float) * scale
    x = np.array([(d.time - start).total_seconds() for d in usable], dtype=float)
    return {"x": x, "y": y, "lo": y - e, "hi": y + e}


def charge_input_size(decisions: Sequence[FeedbackDecision]) -> float | None:
    """The newest charge-loop input's size, ``max(|value|, error)``, as a fraction (for the
    unit of the charge plot); None without a defined one."""
    usable = [d for d in decisions if _defined_charge_input(d)]
    if not usable:
        return None
    newest = usable[-1]
    return max(abs(float(newest.value or 0.0)), float(newest.error or 0.0)) / PPM.scale


def loop_mode(loop: FeedbackLoop) -> tuple[str, str]:
    """The mode to show for ``loop`` (as configured, or as last switched at run time) and a
    note (empty if none)."""
    if loop.mode is None:
        decided = ("dry_run" if any(d.dry_run for d in loop.last) else "on") if loop.last else "off"
        return decided, "not in the run configuration"
    if loop.mode not in FEEDBACK_MODES:
        return "off", f"unknown mode {loop.mode!r}"
    return loop.mode, ""


SENSITIVITY_KEYS = (
    "variable", "unit", "cycle", "cycle_error", "run", "run_error", "difference",
    "difference_error", "pull", "cycle_shown", "run_shown", "difference_shown",
)  # fmt: skip


def _scaled(value: float | None, factor: float) -> float:
    return math.nan if value is None else value * factor


def sensitivity_columns(modulation: Modulation | None) -> dict[str, list]:
    """The modulation panel's table, a row per beam variable in the unit a shift reads
    (:data:`mupnc.daq.beamline.SLOPE_DISPLAY`): the combined sensitivity of the newest
    usable cycle and of the run, and the run's regression minus dithering slope with its
    error and in its errors (``pull``), each ``value ± error`` also as text rounded to the
    error (``cycle_shown``, ``run_shown``, ``difference_shown``); NaN where undefined."""
    out: dict[str, list] = {k: [] for k in SENSITIVITY_KEYS}
    if modulation is None:
        return out
    usable = [c for c in modulation.cycles if c.usable]
    latest = {s.variable: s for s in usable[-1].sensitivities} if usable else {}
    run = {s.variable: s for s in modulation.run}
    none = DitherSlope("", None, None)
    for variable in [v for v in SLOPE_DISPLAY if v in run or v in latest]:
        unit, factor = SLOPE_DISPLAY[variable]
        own, total = latest.get(variable, none), run.get(variable, none)
        difference = _scaled(total.difference, factor)
        error = _scaled(total.difference_error, factor)
        out["variable"].append(variable)
        out["unit"].append(unit)
        out["cycle"].append(_scaled(own.value, factor))
        out["cycle_error"].append(_scaled(own.error, factor))
        out["run"].append(_scaled(total.value, factor))
        out["run_error"].append(_scaled(total.error, factor))
        out["difference"].append(difference)
        out["difference_error"].append(error)
        out["pull"].append(difference / error if error > 0 else math.nan)
    for key in ("cycle", "run", "difference"):
        out[f"{key}_shown"] = with_errors(out[key], out[f"{key}_error"])
    return out


def difference_pull_columns(modulation: Modulation | None, variable: str) -> dict[str, np.ndarray]:
    """Regression minus dithering slopes on ``variable`` per usable cycle (``x``: the cycle
    number), in their errors (``y``); cycles without a comparison are left out."""
    x, y = [], []
    for cycle in () if modulation is None else modulation.cycles:
        for s in cycle.sensitivities:
            if (
                cycle.usable
                and s.variable == variable
                and s.difference is not None
                and s.difference_error
            ):
                x.append(cycle.cycle)
                y.append(s.difference / s.difference_error)
    return {"x": np.array(x, dtype=float), "y": np.array(y, dtype=float)}
