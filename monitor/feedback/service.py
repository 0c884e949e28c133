"""The feedback loops of a run, run by the online monitor (worker thread).

Why in the monitor and not a process of its own: a loop acts on the decoded, cut,
per-pattern statistics the monitor accumulates anyway (the same numbers the shift sees);
a separate process would have to decode the stream a second time or act on coarse result
PVs.  The loop's arithmetic is pure (:mod:`mupnc.monitor.feedback.loop`); here it meets
the run's configuration (``runs.config["feedback"]``), the IOC's actuator setpoints
(``BEAM:HC:CHARGE_SP``, ``BEAM:HC:X_SP``, ``BEAM:HC:Y_SP``, written over Channel Access),
the database (:class:`mupnc.db.models.FeedbackAction`, one row per decision) and the
run-time switches (:class:`FeedbackRequests`, fed by the ``MON:FB:<LOOP>:MODE`` PVs).

A restarted monitor resumes each loop from its last stored action: the setpoints where the
last one left them (no jump), the count of actions, and a fresh window of patterns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from mupnc.db.feedback import current_feedback_modes
from mupnc.db.models import FeedbackAction, FeedbackModeChange, Run
from mupnc.db.session import transaction
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.feedback.loop import (
    DEFAULTS,
    LOOPS,
    Action,
    FeedbackLoop,
    LoopSettings,
    loop_inputs,
)

log = logging.getLogger("mupnc.monitor.feedback")

SETPOINT_PVS = {"charge": "BEAM:HC:CHARGE_SP", "x": "BEAM:HC:X_SP", "y": "BEAM:HC:Y_SP"}
"""Actuator -> the IOC's setpoint PV (suffix after the prefix)."""

Writer = Callable[[str, float], None]
"""Writes a setpoint PV (suffix, value); raises ``ConnectionError`` or ``ValueError`` if the
IOC does not take it."""


class FeedbackRequests:
    """Mode switches asked for at run time (a PV put in the CA server's thread), taken by
    the worker thread at its next flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modes: dict[str, str] = {}

    def ask(self, loop: str, mode: str) -> None:
        with self._lock:
            self._modes[loop] = mode

    def take(self) -> dict[str, str]:
        with self._lock:
            modes, self._modes = self._modes, {}
        return modes


def configured_loops(config: dict | None) -> dict[str, LoopSettings]:
    """Every loop's settings from a stored run configuration (``feedback`` key); a loop
    the configuration does not mention is off, with the loop's defaults."""
    given = (config or {}).get("feedback") or {}
    return {
        loop: LoopSettings(**given[loop]) if loop in given else DEFAULTS[loop] for loop in LOOPS
    }


class FeedbackService:
    """The loops of run ``run``: after each flush :meth:`update` decides, writes the
    setpoints through ``write`` and stores every decision."""

    def __init__(self, engine: Engine, run: int, write: Writer) -> None:
        self.engine, self.run, self.write = engine, run, write
        with transaction(engine) as session:
            row = session.get(Run, run)
            config, replay = row.config, row.source == "replay"
            resumed = _last_setpoints(session, run)
            modes = current_feedback_modes(session, run, config)
        self.loops: dict[str, FeedbackLoop] = {}
        for loop, settings in configured_loops(config).items():
            settings = replace(settings, mode=modes.get(loop, settings.mode))
            if replay and settings.mode != "off":  # the recorded beam cannot be steered
                log.warning("feedback %s off: run %d replays a recorded run", loop, run)
                settings = replace(settings, mode="off")
            setpoints = resumed.get(loop, {})
            self.loops[loop] = FeedbackLoop(
                loop, settings, setpoints=dict(setpoints), actions=_acted(engine, run, loop)
            )
            if setpoints:
                log.info("feedback %s resumed at %s", loop, setpoints)
        self.last: dict[str, list[Action]] = {loop: [] for loop in LOOPS}

    def set_mode(self, loop: str, mode: str) -> None:
        """Switch a loop at run time; the switch is stored (the report and the page show
        the mode now)."""
        self.loops[loop].set_mode(mode)
        with transaction(self.engine) as session:
            session.add(
                FeedbackModeChange(run=self.run, time=datetime.now(UTC), loop=loop, mode=mode)
            )
        log.warning("feedback %s switched to %s", loop, mode)

    def update(self, acc: RunAccumulator, requests: FeedbackRequests | None = None) -> list[Action]:
        """One look after a flush: apply the mode switches asked for, then let every loop
        that is not off decide; returns the decisions (stored and written)."""
        for name, mode in (requests.take() if requests else {}).items():
            self.set_mode(name, mode)
        now = datetime.now(UTC)
        decided: list[Action] = []
        for loop in self.loops.values():
            if loop.settings.mode == "off":
                continue
            try:
                totals = loop_inputs(acc, loop.name)
            except KeyError as err:
                log.error("feedback %s switched off: %s", loop.name, err.args[0])
                loop.set_mode("off")
                continue
            actions = [self._apply(loop, a) for a in loop.update(totals, now.timestamp())]
            if actions:
                self.last[loop.name] = actions
                decided += actions
        if decided:
            self._store(decided, acc.good_patterns, now)
        return decided

    def _apply(self, loop: FeedbackLoop, action: Action) -> Action:
        """Write an action's setpoint (mode on); a refused write leaves the setpoint."""
        if action.dry_run or not action.acted:
            return action
        try:
            self.write(SETPOINT_PVS[action.actuator], action.after)
        except (ConnectionError, ValueError, TimeoutError) as err:
            loop.setpoints[action.actuator] = action.before
            loop.actions -= 1
            log.error("feedback %s: setpoint %s not written: %s", loop.name, action.actuator, err)
            return replace(
                action,
                after=action.before,
                acted=False,
                reason=f"write refused ({err}); wanted {action.after:+.4g}",
            )
        log.info("feedback %s: %s %s", loop.name, action.actuator, action.reason)
        return action

    def _store(self, actions: list[Action], good_patterns: int, now: datetime) -> None:
        with transaction(self.engine) as session:
            session.add_all(
                FeedbackAction(
                    run=self.run,
                    time=now,
                    loop=a.loop,
                    actuator=a.actuator,
                    patterns=a.patterns,
                    window_end=good_patterns,
                    value=a.value,
                    error=a.error,
                    before=a.before,
                    after=a.after,
                    acted=a.acted,
                    saturated=a.saturated,
                    dry_run=a.dry_run,
                    reason=a.reason,
                )
                for a in actions
            )


def _last_setpoints(session, run: int) -> dict[str, dict[str, float]]:
    """Per loop, the setpoint each of its actuators was left at by its last stored decision
    (a dry run's left it where it was)."""
    newest = (
        select(func.max(FeedbackAction.id))
        .where(FeedbackAction.run == run)
        .group_by(FeedbackAction.loop, FeedbackAction.actuator)
    )
    out: dict[str, dict[str, float]] = {}
    for row in session.scalars(select(FeedbackAction).where(FeedbackAction.id.in_(newest))):
        out.setdefault(row.loop, {})[row.actuator] = row.before if row.dry_run else row.after
    return out


def _acted(engine: Engine, run: int, loop: str) -> int:
    with transaction(engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(FeedbackAction)
                .where(
                    FeedbackAction.run == run,
                    FeedbackAction.loop == loop,
                    FeedbackAction.acted,
                    ~FeedbackAction.dry_run,
                )
            )
        )
