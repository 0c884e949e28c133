"""Database reads of the dashboards, returning frozen records (asymmetries as fractions).

Shared by the live feed's poller thread and the history page; every function takes an open
SQLAlchemy ``Session`` and never writes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from mupnc.daq.beamline import BEAM_VARIABLES
from mupnc.daq.channel_map import NOT_DETECTORS, SIGNAL_ROLES
from mupnc.daq.scheme import pattern_windows
from mupnc.dashboards.records import (
    CHARGE,
    COMBINED,
    FEEDBACK_ACTUATORS,
    REGRESSED,
    BeamDifference,
    Channel,
    DitherSlope,
    FeedbackDecision,
    FeedbackLoop,
    MeasuredPolarization,
    MinirunMean,
    Modulation,
    ModulationCycle,
    PolarizationPoint,
    RunInfo,
    Sample,
    Slope,
    Snapshot,
)
from mupnc.db.feedback import current_feedback_modes
from mupnc.db.models import (
    CUMULATIVE,
    DITHERED,
    AsymmetryResult,
    DitherSensitivity,
    FeedbackAction,
    HelicityError,
    Minirun,
    PolarizationResult,
    RegressionSlope,
    ResultSnapshot,
    Run,
    SlowControlSample,
)
from mupnc.db.models import BeamDifference as BeamDifferenceRow
from mupnc.db.models import ModulationCycle as ModulationCycleRow

BEAM_RATE_PV = "BEAM:RATE"
"""Suffix of the muon-rate PV (Hz) whose archived samples feed the beam strip chart."""
MAX_SAMPLES = 5000
MAX_CYCLES = 500
"""Newest modulation cycles a page reads (a cycle every 30 s: four hours)."""
_LAST_CHANNELS = (COMBINED, CHARGE)


def utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes; the monitor writes UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _float(x: object) -> float | None:
    return None if x is None else float(x)


def run_info(run: Run) -> RunInfo:
    """The run's columns, falling back to its configuration for what older rows lack."""
    config = run.config or {}
    channel_map = run.channel_map or config.get("channel_map") or {}
    channels = [c for c in channel_map.get("channels", []) if c.get("role") not in NOT_DETECTORS]
    roles = tuple((c["name"], c["role"]) for c in channels)
    signal = [c for c in channels if c.get("role") in SIGNAL_ROLES]
    expected_shape = config.get("expected_shape") or {}
    shape = tuple((c["name"], float(expected_shape.get(c["name"], 1.0))) for c in channels)
    delay = run.delay_patterns if run.delay_patterns is not None else config.get("delay_patterns")
    scheme = run.scheme or config.get("scheme")
    pattern = str(run.pattern or config.get("pattern", "?"))
    return RunInfo(
        number=run.number,
        state=run.state,
        source=run.source,
        mode=str(run.mode or config.get("mode")),
        start=utc(run.start),
        end=None if run.end is None else utc(run.end),
        blinded=bool(run.blinded or config.get("blinded", False)),
        expected=run.expected_asymmetry,
        windows=run.windows or 0,
        lost_windows=run.lost_windows or 0,
        pattern=pattern,
        window_rate=_float(config.get("window_rate")),
        polarization=_float(config.get("polarization")),
        muon_rate=_float(config.get("muon_rate")),
        delay_patterns=None if delay is None else int(delay),
        scheme=str(scheme or "?"),
        roles=roles,
        pattern_windows=pattern_windows(scheme, pattern, config),
        shape=shape,
        replay_of=run.replay_of,
        flip_period=_float(config.get("flip_period")),
        settle_time=_float(config.get("settle_time")),
        kick_turns=tuple(int(t) for t in config.get("kick_turns") or ()),
        efficiency=sum(float(c.get("acceptance", 0.0)) for c in signal) if signal else None,
        planner_efficiency=_float(config.get("planner_efficiency")),
    )


def latest_run(session: Session) -> RunInfo | None:
    run = session.scalars(select(Run).order_by(Run.number.desc()).limit(1)).first()
    return None if run is None else run_info(run)


def runs(session: Session) -> list[RunInfo]:
    """Every run, newest first."""
    return [run_info(r) for r in session.scalars(select(Run).order_by(Run.number.desc()))]


def get_run(session: Session, number: int) -> RunInfo | None:
    run = session.get(Run, number)
    return None if run is None else run_info(run)


def snapshot_rows(session: Session, run: int, after_id: int = 0) -> list[tuple[int, Snapshot]]:
    """(row id, snapshot) of ``run`` with ids above ``after_id``, oldest first."""
    rows = session.scalars(
        select(ResultSnapshot)
        .where(ResultSnapshot.run == run, ResultSnapshot.id > after_id)
        .order_by(ResultSnapshot.id)
    ).all()
    return [
        (
            r.id,
            Snapshot(
                utc(r.time),
                r.patterns_good,
                r.windows,
                r.lost_windows,
                r.value,
                r.error,
                r.charge_asymmetry,
                r.decoder,
                r.windows_held,
                r.regressed,
                r.regressed_error,
            ),
        )
        for r in rows
    ]


def _channel_order(channel: Channel) -> tuple[int, str]:
    name = channel.name
    return (_LAST_CHANNELS.index(name) + 1 if name in _LAST_CHANNELS else 0, name)


def cumulative_channels(session: Session, run: int) -> tuple[Channel, ...]:
    """Whole-run results per channel; detector channels by name, then combined and charge
    (not the corrected ones: the regressed, :func:`corrected_result`, and the dithered)."""
    rows = session.scalars(
        select(AsymmetryResult).where(
            AsymmetryResult.run == run,
            AsymmetryResult.minirun == CUMULATIVE,
            AsymmetryResult.channel.not_like(f"{REGRESSED}%"),
            AsymmetryResult.channel.not_like(f"{DITHERED}%"),
        )
    ).all()
    return tuple(
        sorted(
            (Channel(r.channel, r.value, r.error, r.chi2_ndf, r.estimator) for r in rows),
            key=_channel_order,
        )
    )


def corrected_result(session: Session, run: int, kind: str = REGRESSED) -> Channel | None:
    """The run's combined asymmetry corrected for the beam differences, ``kind``
    :data:`~mupnc.db.models.REGRESSED` or :data:`~mupnc.db.models.DITHERED` (None: not
    corrected)."""
    row = session.scalars(
        select(AsymmetryResult).where(
            AsymmetryResult.run == run,
            AsymmetryResult.minirun == CUMULATIVE,
            AsymmetryResult.channel == kind,
        )
    ).first()
    return None if row is None else Channel(row.channel, row.value, row.error, row.chi2_ndf)


def beam_differences(session: Session, run: int) -> tuple[BeamDifference, ...]:
    """The run's helicity-correlated beam differences, in :data:`BEAM_VARIABLES` order."""
    rows = session.scalars(
        select(BeamDifferenceRow).where(
            BeamDifferenceRow.run == run, BeamDifferenceRow.minirun == CUMULATIVE
        )
    ).all()
    order = {name: i for i, name in enumerate(BEAM_VARIABLES)}
    return tuple(
        BeamDifference(r.variable, r.value, r.error, r.width, r.unit, r.n)
        for r in sorted(rows, key=lambda r: order.get(r.variable, len(order)))
    )


def minirun_slopes(session: Session, run: int, channel: str = COMBINED) -> tuple[Slope, ...]:
    """The slopes of ``channel``'s asymmetry on each beam variable, minirun by minirun."""
    rows = session.scalars(
        select(RegressionSlope)
        .where(
            RegressionSlope.run == run,
            RegressionSlope.channel == channel,
            RegressionSlope.minirun != CUMULATIVE,
        )
        .order_by(RegressionSlope.minirun, RegressionSlope.id)
    ).all()
    return tuple(Slope(r.minirun, r.variable, r.value, r.error) for r in rows)


def minirun_means(session: Session, run: int) -> tuple[MinirunMean, ...]:
    """The combined asymmetry of every minirun of ``run``, by index."""
    rows = session.execute(
        select(Minirun.index, Minirun.patterns_good, AsymmetryResult.value, AsymmetryResult.error)
        .join(
            AsymmetryResult,
            (AsymmetryResult.run == Minirun.run) & (AsymmetryResult.minirun == Minirun.index),
        )
        .where(Minirun.run == run, AsymmetryResult.channel == COMBINED)
        .order_by(Minirun.index)
    ).all()
    return tuple(MinirunMean(*row) for row in rows)


def helicity_errors(session: Session, run: int) -> tuple[tuple[str, int], ...]:
    """(kind, count) of the decoder's helicity errors, by kind."""
    rows = session.execute(
        select(HelicityError.kind, HelicityError.count)
        .where(HelicityError.run == run)
        .order_by(HelicityError.kind)
    ).all()
    return tuple((kind, int(count)) for kind, count in rows)


ROTATOR_PVS = ("HEL:ROTATOR:STATE", "HEL:ROTATOR:SP", "HEL:ROTATOR:RBV")
"""Spin-rotator PVs (without prefix) whose newest archived sample the helicity panel shows."""


def rotator_samples(session: Session, since: datetime) -> tuple[Sample, ...]:
    """The newest archived sample of each :data:`ROTATOR_PVS` (any prefix) from ``since``
    on, in that order; PVs never archived are left out."""
    return newest_samples(session, ROTATOR_PVS, since)


BEAM_STATE_PVS = ("BEAM:ON", "BEAM:TRIP", "BEAM:RATE_SP")
"""Beam PVs (without prefix) whose newest archived sample the beam state badge shows."""


def beam_state_samples(session: Session) -> tuple[Sample, ...]:
    """The newest archived sample of each :data:`BEAM_STATE_PVS` (any prefix), whenever it
    was taken: the archiver writes on change, and a beam switched on before the run began
    has its sample from then."""
    return newest_samples(session, BEAM_STATE_PVS)


def newest_samples(
    session: Session, names: tuple[str, ...], since: datetime | None = None
) -> tuple[Sample, ...]:
    """The newest archived sample of each PV of ``names`` (any prefix; from ``since`` on if
    given), in that order; PVs never archived are left out."""
    newest = []
    for name in names:
        query = select(SlowControlSample).where(SlowControlSample.pv.endswith(name))
        if since is not None:
            query = query.where(SlowControlSample.time >= since)
        row = session.scalars(query.order_by(SlowControlSample.id.desc()).limit(1)).first()
        if row is not None:
            newest.append(Sample(utc(row.time), name, row.value, row.severity))
    return tuple(newest)


def beam_rate_samples(
    session: Session, since: datetime, after_id: int = 0
) -> list[tuple[int, Sample]]:
    """(row id, sample) of the muon-rate PV (any prefix) from ``since`` on, ids above
    ``after_id``, oldest first, at most :data:`MAX_SAMPLES`."""
    rows = session.scalars(
        select(SlowControlSample)
        .where(
            SlowControlSample.id > after_id,
            SlowControlSample.pv.endswith(BEAM_RATE_PV),
            SlowControlSample.time >= since,
        )
        .order_by(SlowControlSample.id)
        .limit(MAX_SAMPLES)
    ).all()
    return [(r.id, Sample(utc(r.time), r.pv, r.value, r.severity)) for r in rows]


def _decision(row: FeedbackAction) -> FeedbackDecision:
    return FeedbackDecision(
        time=utc(row.time),
        loop=row.loop,
        actuator=row.actuator,
        patterns=int(row.patterns),
        window_end=int(row.window_end),
        value=row.value,
        error=row.error,
        before=float(row.before),
        after=float(row.after),
        acted=bool(row.acted),
        saturated=bool(row.saturated),
        dry_run=bool(row.dry_run),
        reason=row.reason,
    )


def feedback_actions(
    session: Session, run: int, after_id: int = 0
) -> list[tuple[int, FeedbackDecision]]:
    """(row id, decision) of ``run``'s feedback loops with ids above ``after_id``, oldest
    first."""
    rows = session.scalars(
        select(FeedbackAction)
        .where(FeedbackAction.run == run, FeedbackAction.id > after_id)
        .order_by(FeedbackAction.id)
    ).all()
    return [(r.id, _decision(r)) for r in rows]


def _configured_loops(config: dict | None) -> dict[str, dict]:
    """The run configuration's ``feedback`` tables (loop -> settings), known loops only."""
    given = (config or {}).get("feedback") or {}
    return {loop: dict(given[loop] or {}) for loop in FEEDBACK_ACTUATORS if loop in given}


def feedback_loops(session: Session, run: int) -> tuple[FeedbackLoop, ...]:
    """Every loop of ``run`` that its configuration names or that decided, in
    :data:`FEEDBACK_ACTUATORS` order: configured mode and clamp, the setpoint changes
    applied, the decisions (one per window, whatever the actuators; as ``report`` counts
    them) and the last decision on each actuator."""
    row = session.get(Run, run)
    configured = _configured_loops(None if row is None else row.config)
    modes = current_feedback_modes(session, run, None if row is None else row.config)
    applied = case((FeedbackAction.acted & ~FeedbackAction.dry_run, 1), else_=0)
    counts = {
        loop: (int(actions or 0), int(decisions))
        for loop, actions, decisions in session.execute(
            select(
                FeedbackAction.loop,
                func.sum(applied),
                func.count(distinct(FeedbackAction.window_end)),
            )
            .where(FeedbackAction.run == run)
            .group_by(FeedbackAction.loop)
        )
    }
    newest = (
        select(func.max(FeedbackAction.id))
        .where(FeedbackAction.run == run)
        .group_by(FeedbackAction.loop, FeedbackAction.actuator)
    )
    last: dict[str, list[FeedbackDecision]] = {}
    for action in session.scalars(
        select(FeedbackAction).where(FeedbackAction.id.in_(newest)).order_by(FeedbackAction.id)
    ):
        last.setdefault(action.loop, []).append(_decision(action))
    loops = []
    for loop in FEEDBACK_ACTUATORS:
        if loop not in configured and loop not in counts:
            continue
        settings = configured.get(loop)
        order = FEEDBACK_ACTUATORS[loop]
        mine = sorted(
            last.get(loop, []),
            key=lambda d: order.index(d.actuator) if d.actuator in order else len(order),
        )
        actions, decisions = counts.get(loop, (0, 0))
        loops.append(
            FeedbackLoop(
                loop=loop,
                mode=modes.get(loop),
                clamp=None if settings is None else _float(settings.get("clamp")),
                patterns=None
                if settings is None or settings.get("patterns") is None
                else int(settings["patterns"]),
                actions=actions,
                decisions=decisions,
                last=tuple(mine),
            )
        )
    return tuple(loops)


def modulation(session: Session, run: RunInfo) -> Modulation | None:
    """The run's newest :data:`MAX_CYCLES` modulation cycles with their combined
    sensitivities, and the run's (None: no cycle came)."""
    rows = session.scalars(
        select(ModulationCycleRow)
        .where(ModulationCycleRow.run == run.number)
        .order_by(ModulationCycleRow.cycle.desc())
        .limit(MAX_CYCLES)
    ).all()
    if not rows:
        return None
    first = rows[-1].cycle
    slopes = session.scalars(
        select(DitherSensitivity)
        .where(
            DitherSensitivity.run == run.number,
            DitherSensitivity.channel == COMBINED,
            (DitherSensitivity.cycle >= first) | (DitherSensitivity.cycle == CUMULATIVE),
        )
        .order_by(DitherSensitivity.cycle, DitherSensitivity.id)
    ).all()
    order = {name: i for i, name in enumerate(BEAM_VARIABLES)}
    by_cycle: dict[int, list[DitherSlope]] = {}
    for s in sorted(slopes, key=lambda s: (s.cycle, order.get(s.variable, len(order)))):
        by_cycle.setdefault(s.cycle, []).append(
            DitherSlope(s.variable, s.value, s.error, s.difference, s.difference_error)
        )
    cycles = tuple(
        ModulationCycle(
            r.cycle,
            r.minirun,
            r.windows,
            r.coils,
            tuple(name for name in r.dead_coils.split(",") if name),
            r.skipped or "",
            tuple(by_cycle.get(r.cycle, ())),
        )
        for r in reversed(rows)
    )
    return Modulation(cycles, tuple(by_cycle.get(CUMULATIVE, ())))


def measured_polarization(session: Session, run: int) -> MeasuredPolarization | None:
    """The run's measured polarization and each minirun's (None: no polarimeter)."""
    rows = session.scalars(
        select(PolarizationResult)
        .where(PolarizationResult.run == run)
        .order_by(PolarizationResult.minirun)
    ).all()
    total = next((r for r in rows if r.minirun == CUMULATIVE), None)
    if total is None:
        return None

    def point(r: PolarizationResult) -> PolarizationPoint:
        return PolarizationPoint(
            r.minirun, r.plus, r.plus_error, r.minus, r.minus_error, r.effective,
            r.effective_error, r.flip_quality, r.flip_quality_error,
        )  # fmt: skip

    miniruns = tuple(point(r) for r in rows if r.minirun != CUMULATIVE)
    return MeasuredPolarization(
        point(total), miniruns, total.configured_value, total.configured_error
    )
