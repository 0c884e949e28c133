"""The dashboards' records: frozen values read from the database (:mod:`mupnc.dashboards.queries`)
and drawn by the pages (asymmetries and errors as fractions, times in UTC).  Pure: no
SQLAlchemy, no Bokeh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mupnc.monitor.feedback.loop import INPUT_UNITS, LOOP_ACTUATORS
from mupnc.monitor.feedback.loop import SETPOINT_UNITS as LOOP_SETPOINT_UNITS

COMBINED, CHARGE, REGRESSED = "combined", "charge", "regressed"
"""Result names of the combined detector asymmetry, of the beam-charge asymmetry and of the
combined regressed asymmetry."""


@dataclass(frozen=True)
class RunInfo:
    """A run and the settings it was taken with; ``expected`` is the asymmetry the monitor
    should report for a simulated run (stored with the run when it was made)."""

    number: int
    state: str
    source: str
    mode: str
    start: datetime
    end: datetime | None
    blinded: bool
    expected: float | None
    windows: int
    lost_windows: int
    pattern: str
    window_rate: float | None
    polarization: float | None
    muon_rate: float | None
    delay_patterns: int | None
    scheme: str
    roles: tuple[tuple[str, str], ...]
    """(channel name, role) from the run's channel map."""
    pattern_windows: int | None
    """DAQ windows per helicity pattern (a slow or kick run's state is a reversal interval of
    many windows; :func:`mupnc.daq.scheme.pattern_windows`); None when the run does not say."""
    shape: tuple[tuple[str, float], ...] = ()
    """(channel name, relative asymmetry ``A[c] / A0``) stored with a simulated run (the A_LR
    preset's shape at each channel's cos theta; 1 for a flat preset and for other roles)."""
    replay_of: int | None = None
    """The recorded run this run replays (source "replay")."""
    flip_period: float | None = None
    """Slow and kick: seconds per reversal interval (None: the run does not say)."""
    settle_time: float | None = None
    """Slow and kick: seconds the rotator needs to settle after a flip, cut from each
    interval (None: the run does not say)."""
    kick_turns: tuple[int, ...] = ()
    """Kick: the turn numbers the kick alternates between."""
    efficiency: float | None = None
    """Signal events per muon the run's channel map declares (the sum of its signal
    channels' acceptances: what a simulated run counts); None without a map."""
    planner_efficiency: float | None = None
    """Signal events per muon ``mupnc plan`` assumes for the mode (stored with the run)."""

    @property
    def origin(self) -> str:
        """Where the data come from: the source ("live", "sim"), or "replay of run N"."""
        return self.source if self.replay_of is None else f"replay of run {self.replay_of}"


@dataclass(frozen=True)
class Snapshot:
    """One ``result_snapshots`` row; ``value``/``error`` are fractions, None early in a run."""

    time: datetime
    patterns_good: int
    windows: int
    lost_windows: int
    value: float | None
    error: float | None
    charge_asymmetry: float | None = None
    decoder: str | None = None
    """The decoder's lock: LOCKED, LEARNING, UNLOCKED (None: a monitor that did not say)."""
    windows_held: int | None = None
    regressed: float | None = None
    """The combined asymmetry corrected by the regression on the beam differences."""
    regressed_error: float | None = None


@dataclass(frozen=True)
class Channel:
    """Cumulative asymmetry of a channel, ``combined`` (with χ²/ndf of miniruns) or ``charge``."""

    name: str
    value: float | None
    error: float | None
    chi2_ndf: float | None = None
    estimator: str | None = None
    """Of ``combined``: ``integrating`` or ``counting``."""


@dataclass(frozen=True)
class Sample:
    """One archived slow-control sample (EPICS severity name)."""

    time: datetime
    pv: str
    value: float | None
    severity: str


@dataclass(frozen=True)
class MinirunMean:
    """The combined asymmetry of one minirun."""

    index: int
    patterns_good: int
    value: float | None
    error: float | None


@dataclass(frozen=True)
class BeamDifference:
    """A beam variable's helicity-correlated difference, ``(mean+ - mean-) / 2``, over the
    run (or a minirun), in ``unit`` (mm, mrad, "" for dp/p)."""

    variable: str
    value: float | None
    error: float | None
    width: float | None
    unit: str
    n: int


@dataclass(frozen=True)
class Slope:
    """The combined asymmetry's slope on a beam variable in one minirun (fraction per unit)."""

    minirun: int
    variable: str
    value: float | None
    error: float | None


FEEDBACK_ACTUATORS = LOOP_ACTUATORS
"""Feedback loop -> the actuators it drives (:mod:`mupnc.monitor.feedback.loop`)."""
FEEDBACK_INPUT_UNITS = {loop: unit.replace("um", "µm") for loop, unit in INPUT_UNITS.items()}
"""A loop's input unit as the page names it: the charge asymmetry in ppm, the position
differences in µm (the monitor writes ``um``)."""
SETPOINT_UNITS = {name: unit.replace("um", "µm") for name, unit in LOOP_SETPOINT_UNITS.items()}
"""An actuator's setpoint unit as the page names it."""


@dataclass(frozen=True)
class FeedbackDecision:
    """One decision of a feedback loop on one actuator (a ``feedback_actions`` row).

    Unlike the asymmetries elsewhere, in the loop's own units: the input ``value`` ±
    ``error`` over ``patterns`` good patterns in :data:`FEEDBACK_INPUT_UNITS` (ppm, µm), the
    setpoint ``before`` and ``after`` in :data:`SETPOINT_UNITS`.  A dry run's ``after`` is
    the setpoint it would have set (the actuator kept ``before``); ``saturated``: held at
    the clamp; ``window_end``: the run's good patterns at the decision."""

    time: datetime
    loop: str
    actuator: str
    patterns: int
    window_end: int
    value: float | None
    error: float | None
    before: float
    after: float
    acted: bool
    saturated: bool
    dry_run: bool
    reason: str

    @property
    def applied(self) -> float:
        """The setpoint the actuator holds after this decision (a dry run changes none)."""
        return self.before if self.dry_run else self.after


@dataclass(frozen=True)
class FeedbackLoop:
    """A loop of a run: its configured ``mode`` (``off``, ``dry_run``, ``on``; None when the
    run's configuration does not name the loop although it decided), its ``clamp``
    (setpoint unit; None if not configured) and ``patterns`` per decision, the setpoint
    changes applied (``actions``), its ``decisions`` and the ``last`` decision (one per
    actuator; empty before the first)."""

    loop: str
    mode: str | None
    clamp: float | None
    patterns: int | None
    actions: int
    decisions: int
    last: tuple[FeedbackDecision, ...] = ()


@dataclass(frozen=True)
class DitherSlope:
    """The combined asymmetry's dithering sensitivity to one beam variable (fraction per
    unit of the variable) and the regression's slope minus it (None: not compared)."""

    variable: str
    value: float | None
    error: float | None
    difference: float | None = None
    difference_error: float | None = None


@dataclass(frozen=True)
class ModulationCycle:
    """One beam-modulation cycle: the minirun it came with, its windows, the coils driven
    long enough to be fitted, the dead ones, why it gave no sensitivities (``skipped``,
    empty when it did) and the combined sensitivities (:class:`DitherSlope`)."""

    cycle: int
    minirun: int
    windows: int
    coils: int
    dead_coils: tuple[str, ...]
    skipped: str
    sensitivities: tuple[DitherSlope, ...]

    @property
    def usable(self) -> bool:
        return not self.skipped


@dataclass(frozen=True)
class Modulation:
    """A run's beam modulation: its newest ``cycles`` (oldest first, at least one) and the
    run's combined sensitivities, averaged over the usable cycles (``run``; empty before
    the first)."""

    cycles: tuple[ModulationCycle, ...]
    run: tuple[DitherSlope, ...] = ()


@dataclass(frozen=True)
class PolarizationPoint:
    """The polarization the polarimeter measured in a minirun (or the run): signed per
    spin state (``plus`` for helicity +1), ``effective`` (what the asymmetries are divided
    by) and the flip quality ``|P+| - |P-|``, each with its error; None where undefined."""

    minirun: int
    plus: float | None
    plus_error: float | None
    minus: float | None
    minus_error: float | None
    effective: float | None
    effective_error: float | None
    flip_quality: float | None
    flip_quality_error: float | None

    @property
    def flip_sigma(self) -> float | None:
        """``(|P+| - |P-|) / error`` (None: undefined)."""
        if self.flip_quality is None or not self.flip_quality_error:
            return None
        return self.flip_quality / self.flip_quality_error


@dataclass(frozen=True)
class MeasuredPolarization:
    """A run's measured polarization (``run``), each minirun's (``miniruns``) and the
    combined asymmetry divided by the configured polarization instead (``configured``,
    ``configured_error``; fractions)."""

    run: PolarizationPoint
    miniruns: tuple[PolarizationPoint, ...]
    configured: float | None = None
    configured_error: float | None = None
