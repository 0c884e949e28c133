"""Run list and run summary read from the database (the data of ``mupnc runs`` and
``mupnc report``; JSON shapes in docs/reference.md's 'JSON for scripts', asymmetries as plain
fractions)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mupnc.daq.channel_map import NOT_DETECTORS, SIGNAL_ROLES
from mupnc.daq.scheme import pattern_windows
from mupnc.db.feedback import current_feedback_modes
from mupnc.db.lease import LEASE_SECONDS, OPEN_STATES, monitor_alive
from mupnc.db.models import (
    CUMULATIVE,
    DITHERED,
    REGRESSED,
    Alarm,
    AlarmTransition,
    AsymmetryResult,
    BeamDifference,
    DitherSensitivity,
    FeedbackAction,
    HelicityCounts,
    HelicityError,
    Minirun,
    ModulationCycle,
    PolarizationResult,
    RegressionSlope,
    Run,
)


def _iso(t) -> str | None:
    return None if t is None else t.isoformat()


def run_list(session: Session, now: datetime) -> list[dict]:
    """Every run, oldest first: ``runs --json``.  ``monitor`` is ``"live"`` while a monitor
    holds the run's lease, ``"gone"`` for an open run (starting, running) without one — a
    run stuck open, which ``mupnc run close`` ends — else null."""
    return [
        {
            "run": r.number,
            "state": r.state,
            "start": _iso(r.start),
            "windows": r.windows,
            "source": r.source,
            "replay_of": r.replay_of,
            "end": _iso(r.end),
            "mode": r.mode,
            "lost_windows": r.lost_windows,
            "end_reason": r.end_reason,
            "monitor": _monitor(r, now),
            "monitor_host": r.monitor_host,
            "monitor_pid": r.monitor_pid,
            "heartbeat": _iso(r.heartbeat),
        }
        for r in session.scalars(select(Run).order_by(Run.number))
    ]


def _monitor(run: Run, now: datetime) -> str | None:
    if monitor_alive(run, now):
        return "live"
    if run.state in OPEN_STATES and now - run.start > timedelta(seconds=LEASE_SECONDS):
        return "gone"
    return None


def _result(r: AsymmetryResult | None) -> dict:
    keys = ("value", "error", "n", "chi2_ndf", "estimator")
    return dict.fromkeys(keys) if r is None else {k: getattr(r, k) for k in keys}


def run_summary(session: Session, number: int) -> dict:
    """The prompt summary of a run: ``report --json``.  Raises ``LookupError``."""
    run = session.get(Run, number)
    if run is None:
        raise LookupError(f"run {number} is not in the database")
    results = {
        r.channel: r
        for r in session.scalars(
            select(AsymmetryResult).where(
                AsymmetryResult.run == number, AsymmetryResult.minirun == CUMULATIVE
            )
        )
    }
    combined, charge = results.pop("combined", None), results.pop("charge", None)
    regressed = results.pop(REGRESSED, None)
    regressed_channels = {
        name.split(":", 1)[1]: results.pop(name)
        for name in list(results)
        if name.startswith(f"{REGRESSED}:")
    }
    dithered = results.pop(DITHERED, None)
    dithered_channels = {
        name.split(":", 1)[1]: results.pop(name)
        for name in list(results)
        if name.startswith(f"{DITHERED}:")
    }
    patterns_good, miniruns = session.execute(
        select(func.coalesce(func.sum(Minirun.patterns_good), 0), func.count(Minirun.id)).where(
            Minirun.run == number
        )
    ).one()
    patterns_good, miniruns = int(patterns_good), int(miniruns)  # PostgreSQL sums: Decimal
    config = run.config or {}
    size = pattern_windows(
        run.scheme or config.get("scheme"), run.pattern or config.get("pattern", ""), config
    )
    good_percent = 100.0 * patterns_good * size / run.windows if size and run.windows else None
    channel_map = run.channel_map or run.config.get("channel_map") or {}
    names = [
        c["name"] for c in channel_map.get("channels", []) if c.get("role") not in NOT_DETECTORS
    ]
    nulls = {name: results.pop(name) for name in sorted(results) if name.startswith("null")}
    names += sorted(set(results) - set(names))
    alarms = session.scalars(select(Alarm).where(Alarm.run == number).order_by(Alarm.since))
    beam_cut, notes, modulation = session.execute(
        select(
            func.coalesce(func.sum(Minirun.patterns_beam_cut), 0),
            func.count(Minirun.regression_note),
            func.coalesce(func.sum(Minirun.patterns_modulation), 0),
        ).where(Minirun.run == number)
    ).one()
    summary = {
        "run": run.number,
        "state": run.state,
        "source": run.source,
        "replay_of": run.replay_of,
        "mode": run.mode,
        "start": _iso(run.start),
        "end": _iso(run.end),
        "end_reason": run.end_reason,
        "pattern": run.pattern or run.config.get("pattern"),
        "scheme": run.scheme,
        "windows": run.windows,
        "lost_windows": run.lost_windows,
        "patterns_good": patterns_good,
        "patterns_good_percent": good_percent,
        "miniruns": miniruns,
        "blinded": run.blinded,
        "blinding_checksum": run.blinding_checksum,
        "asymmetry": {k: v for k, v in _result(combined).items() if k != "n"},
        "charge_asymmetry": None if charge is None else _measurement(charge),
        "null_asymmetries": {name: _measurement(r) for name, r in nulls.items()},
        "channels": [
            {"name": name, "value": results[name].value, "error": results[name].error}
            for name in names
            if name in results
        ],
        "helicity_errors": {
            e.kind: e.count
            for e in session.scalars(
                select(HelicityError).where(HelicityError.run == number).order_by(HelicityError.id)
            )
        },
        "alarms": [
            {
                "id": a.id,
                "name": a.name,
                "severity": a.severity,
                "state": a.state,
                "since": _iso(a.since),
                "message": a.message,
                "acknowledged": a.acknowledged,
                **_tripped(session, a.id),
            }
            for a in alarms
        ],
    }
    summary.update(_beam(session, number, regressed, regressed_channels, names))
    summary["feedback"] = _feedback(session, number, run.config or {})
    summary["patterns_beam_cut"] = int(beam_cut)
    summary["patterns_modulation"] = int(modulation)
    summary["dithered"] = (
        None if dithered is None else {"value": dithered.value, "error": dithered.error}
    )
    summary["dithered_channels"] = [
        {
            "name": name,
            "value": dithered_channels[name].value,
            "error": dithered_channels[name].error,
        }
        for name in names
        if name in dithered_channels
    ]
    summary["modulation"] = _modulation(session, number)
    summary["polarization"] = _polarization(session, number)
    summary["miniruns_not_regressed"] = int(notes)
    summary["efficiency"] = _efficiency(session, number, channel_map)
    if not run.blinded:  # a blinded run's injected and expected asymmetries are hidden too
        summary["injected_asymmetry"] = run.config.get("asymmetry")
        summary["expected_asymmetry"] = run.expected_asymmetry
    return summary


def _efficiency(session: Session, number: int, channel_map: dict) -> dict:
    """``efficiency``, signal events per incident muon: ``channel_map`` (the sum of the
    signal channels' declared acceptances) and ``measured`` (their counts over the beam
    monitor's muons in the same windows; None before any window).  The front door adds the
    planner's (:func:`mupnc.commands.report`)."""
    signal = [c for c in channel_map.get("channels", []) if c.get("role") in SIGNAL_ROLES]
    names = [c["name"] for c in signal]
    counts, muons = 0, 0.0
    if names:
        counts = session.scalar(
            select(func.coalesce(func.sum(HelicityCounts.counts), 0)).where(
                HelicityCounts.run == number, HelicityCounts.channel.in_(names)
            )
        )
        muons = session.scalar(
            select(func.coalesce(func.sum(HelicityCounts.beam_monitor), 0.0)).where(
                HelicityCounts.run == number, HelicityCounts.channel == names[0]
            )
        )
    return {
        "channel_map": sum(float(c.get("acceptance", 0.0)) for c in signal),
        "measured": int(counts) / float(muons) if muons else None,
    }


def _value_error(r: AsymmetryResult) -> dict:
    return {"value": r.value, "error": r.error}


def _polarization(session: Session, number: int) -> dict | None:
    """``polarization`` (None without a polarimeter): the run's measured ``plus`` and
    ``minus`` (signed, per spin state), ``effective`` (what the physics asymmetries are
    divided by: ``source`` says ``measured``), ``flip_quality`` (``|P+| - |P-|``) and
    ``flip_quality_sigma``, ``balance_measured`` (under a complete flip),
    ``asymmetry_configured_polarization`` (the combined asymmetry divided by the configured
    polarization instead) and each minirun's ``plus``, ``minus``, ``effective`` and
    ``flip_quality_sigma``."""
    rows = session.scalars(
        select(PolarizationResult)
        .where(PolarizationResult.run == number)
        .order_by(PolarizationResult.minirun)
    ).all()
    run = next((r for r in rows if r.minirun == CUMULATIVE), None)
    if run is None:
        return None

    def pair(value: float | None, error: float | None) -> dict:
        return {"value": value, "error": error}

    def sigma(r: PolarizationResult) -> float | None:
        if r.flip_quality is None or not r.flip_quality_error:
            return None
        return r.flip_quality / r.flip_quality_error

    return {
        "source": "measured",
        "plus": pair(run.plus, run.plus_error),
        "minus": pair(run.minus, run.minus_error),
        "effective": pair(run.effective, run.effective_error),
        "flip_quality": pair(run.flip_quality, run.flip_quality_error),
        "flip_quality_sigma": sigma(run),
        "balance_measured": run.balance_measured,
        "counts": {"forward": run.forward_counts, "backward": run.backward_counts},
        "asymmetry_configured_polarization": pair(run.configured_value, run.configured_error),
        "miniruns": [
            {
                "minirun": r.minirun,
                "plus": pair(r.plus, r.plus_error),
                "minus": pair(r.minus, r.minus_error),
                "effective": pair(r.effective, r.effective_error),
                "flip_quality_sigma": sigma(r),
            }
            for r in rows
            if r.minirun != CUMULATIVE
        ],
    }


def _modulation(session: Session, number: int) -> dict:
    """``modulation``: the run's beam-modulation ``cycles``, how many were ``usable``, the
    coils dead in any (``dead_coils``), and the run's ``sensitivities`` (per channel and
    ``combined``, and beam variable: fraction per unit of the variable) with the regression
    minus dithering slope ``difference`` (null where not compared)."""
    cycles = session.scalars(
        select(ModulationCycle).where(ModulationCycle.run == number).order_by(ModulationCycle.cycle)
    ).all()
    sensitivities = session.scalars(
        select(DitherSensitivity)
        .where(DitherSensitivity.run == number, DitherSensitivity.cycle == CUMULATIVE)
        .order_by(DitherSensitivity.id)
    ).all()
    dead = {name for c in cycles for name in c.dead_coils.split(",") if name}
    return {
        "cycles": len(cycles),
        "usable": sum(c.skipped is None for c in cycles),
        "dead_coils": sorted(dead),
        "sensitivities": [
            {
                "channel": r.channel,
                "variable": r.variable,
                "value": r.value,
                "error": r.error,
                "difference": r.difference,
                "difference_error": r.difference_error,
            }
            for r in sensitivities
        ],
    }


def _feedback(session: Session, number: int, config: dict) -> dict:
    """``feedback``: per loop configured or that decided (:mod:`mupnc.monitor.feedback`),
    its ``mode`` now (configured, or as last switched at run time), the setpoint changes
    applied (``actions``), its ``decisions``, the ``last_setpoint`` (a number for the
    charge loop, ppm; ``{"x", "y"}`` in um for the position loop) and whether its last
    decision was ``saturated`` at the clamp."""
    rows = session.scalars(
        select(FeedbackAction).where(FeedbackAction.run == number).order_by(FeedbackAction.id)
    ).all()
    configured = config.get("feedback") or {}
    modes = current_feedback_modes(session, number, config)
    out: dict[str, dict] = {}
    for loop in sorted({*configured, *(r.loop for r in rows)}):
        mine = [r for r in rows if r.loop == loop]
        last = {r.actuator: r for r in mine}
        setpoints = {a: r.before if r.dry_run else r.after for a, r in last.items()}
        out[loop] = {
            "mode": modes.get(loop, "off"),
            "actions": sum(r.acted and not r.dry_run for r in mine),
            "decisions": len({r.window_end for r in mine}),
            "last_setpoint": setpoints.get(loop) if loop == "charge" else setpoints or None,
            "saturated": any(r.saturated for r in last.values()),
        }
    return out


def _beam(
    session: Session,
    number: int,
    regressed: AsymmetryResult | None,
    regressed_channels: dict[str, AsymmetryResult],
    names: list[str],
) -> dict:
    """``regressed``, ``regressed_channels``, ``beam`` and ``slopes`` of a run's report."""
    differences = session.scalars(
        select(BeamDifference)
        .where(BeamDifference.run == number, BeamDifference.minirun == CUMULATIVE)
        .order_by(BeamDifference.id)
    )
    slopes = session.scalars(
        select(RegressionSlope)
        .where(RegressionSlope.run == number, RegressionSlope.minirun == CUMULATIVE)
        .order_by(RegressionSlope.id)
    )
    return {
        "regressed": None
        if regressed is None
        else {k: v for k, v in _result(regressed).items() if k not in ("n", "estimator")},
        "regressed_channels": [
            {
                "name": name,
                "value": regressed_channels[name].value,
                "error": regressed_channels[name].error,
            }
            for name in names
            if name in regressed_channels
        ],
        "beam": {
            d.variable: {
                "diff": d.value,
                "error": d.error,
                "width": d.width,
                "unit": d.unit,
                "n": d.n,
            }
            for d in differences
        },
        "slopes": [
            {"channel": s.channel, "variable": s.variable, "value": s.value, "error": s.error}
            for s in slopes
        ],
    }


def _measurement(r: AsymmetryResult) -> dict:
    return {k: v for k, v in _result(r).items() if k != "estimator"}


def helicity_totals(session: Session, number: int, channels: list[str]) -> list[list[int]]:
    """The run's helicity-sorted detector counts summed over miniruns: rows helicity +1 and
    -1, columns ``channels`` (windows of undecoded helicity are in neither)."""
    rows = session.execute(
        select(HelicityCounts.helicity, HelicityCounts.channel, func.sum(HelicityCounts.counts))
        .where(HelicityCounts.run == number, HelicityCounts.helicity != 0)
        .group_by(HelicityCounts.helicity, HelicityCounts.channel)
    ).all()
    table = {(h, c): int(n) for h, c, n in rows}
    return [[table.get((h, name), 0) for name in channels] for h in (1, -1)]


SEVERITY_ORDER = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")


def _tripped(session: Session, alarm_id: int) -> dict:
    """What a logbook needs of an alarm: ``tripped``, why it first became active (its
    ``message`` is the newest, e.g. ``+0 in 252 windows`` once it cleared), and
    ``peak_severity``, the highest it reached."""
    transitions = session.scalars(
        select(AlarmTransition)
        .where(AlarmTransition.alarm_id == alarm_id)
        .order_by(AlarmTransition.time, AlarmTransition.id)
    ).all()
    active = [t for t in transitions if t.to_state == "active"]
    severities = [t.to_severity for t in transitions if t.to_severity in SEVERITY_ORDER]
    return {
        "tripped": active[0].reason if active else None,
        "peak_severity": max(severities, key=SEVERITY_ORDER.index, default=None),
    }
