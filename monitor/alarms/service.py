"""The alarm service inside the online monitor: evaluates the rules at every flush.

Per evaluation (the monitor's worker thread, once a second): operator actions taken since
the last one (``mupnc alarms``, the dashboard) are applied from the database
(:func:`mupnc.db.alarms.operator_actions`); the observations (:mod:`mupnc.monitor.alarms.inputs`) go
through every rule (:mod:`mupnc.monitor.alarms.rules`) and its state machine
(:mod:`mupnc.monitor.alarms.logic`); every transition is stored (:mod:`mupnc.db.alarms`; kept and
retried while the database is unreachable); annunciated alarms run their class's actions
(log, a command hook, a run stop); the alarm PVs are updated (:mod:`mupnc.monitor.alarms.pvs`).

A command hook runs without a shell, in its own session, with ``MUPNC_ALARM_ID``,
``_NAME``, ``_SEVERITY``, ``_STATE``, ``_MESSAGE`` and ``MUPNC_RUN`` in its environment; the
service never waits for it.  A run stop writes ``RUN:STOP = STOP`` once per run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from datetime import UTC, datetime

import epics
import numpy as np
from sqlalchemy import Engine

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.severity import Severity
from mupnc.db.alarms import (
    close_run_alarms,
    last_transition_id,
    open_alarms,
    operator_actions,
    record_transition,
)
from mupnc.db.session import UNREACHABLE, transaction
from mupnc.monitor.alarms.inputs import INPUT_PVS, AlarmInputs, feedback_observations
from mupnc.monitor.alarms.logic import AlarmStatus, Transition, acknowledge, evaluate, shelve
from mupnc.monitor.alarms.pv_watch import PvWatch
from mupnc.monitor.alarms.pvs import write_alarm_pvs
from mupnc.monitor.alarms.rules import AlarmRule, RuleSet
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.results import RunResult
from mupnc.monitor.decoding.stream import DecoderState
from mupnc.monitor.feedback.service import FeedbackService
from mupnc.monitor.ingest_counters import IngestCounters

log = logging.getLogger("mupnc.monitor.alarms")


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class AlarmService:
    """Alarms of one monitor; ``publisher``/``pvs`` (optional) serve the alarm PVs."""

    def __init__(self, prefix: str, engine: Engine, rules: RuleSet, publisher=None, pvs=None):
        self.prefix = prefix
        self.engine = engine
        self.rules = rules
        self.publisher, self.pvs = publisher, pvs
        self.statuses = {rule.name: AlarmStatus() for rule in rules.rules}
        self._occurrence: dict[str, int] = {}  # rule name -> id of its open Alarm row
        self._messages: dict[str, str] = {}
        self._unstored: list[tuple[str, float, Transition, str]] = []
        self._changed = set(self.statuses)  # PVs to write
        self._announce: list[tuple[AlarmRule, Transition, str]] = []  # actions to run
        self._hooks: list[subprocess.Popen] = []
        self._stop_requested = False
        self._last_action = 0
        self._counters: dict[str, float] = {}
        self.run = -1
        self.watch: PvWatch | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(
        self, run: int, channel_map: ChannelMap, decoder: DecoderState, counters: IngestCounters
    ) -> None:
        """Begin watching run ``run`` (restoring its open alarms, if a monitor restarted);
        nothing of an earlier run carries over."""
        self.run = run
        self.statuses = {rule.name: AlarmStatus() for rule in self.rules.rules}
        self._occurrence, self._messages = {}, {}
        self._changed = set(self.statuses)
        now = time.time()
        self.watch = PvWatch(self.prefix, tuple(dict.fromkeys(INPUT_PVS + self.rules.pvs)))
        acceptance = np.array([c.acceptance for c in channel_map.detectors().channels])
        self.inputs = AlarmInputs(self.rules.inputs, acceptance, now)
        self._counters = self._counter_values(decoder, counters)
        try:
            with transaction(self.engine) as session:
                self._last_action = last_transition_id(session)
                for row in open_alarms(session, run):
                    if row.name in self.statuses:
                        self._restore(row)
        except UNREACHABLE as err:
            log.warning("alarms: cannot read open alarms of run %d: %s", run, err)

    def _restore(self, row) -> None:
        status = self.statuses[row.name]
        status.latched = Severity[row.severity]
        status.acknowledged = row.acknowledged
        if row.state == "shelved" and row.shelved_until is not None:
            status.shelved_until = row.shelved_until.timestamp()
        self._occurrence[row.name] = row.id
        self._messages[row.name] = row.message

    def end_run(self, how: str) -> None:
        """The run is over (``how``: ended, aborted): store what is left and close its
        alarms, which nothing will clear any more (they stay in the history)."""
        self._store()
        try:
            with transaction(self.engine) as session:
                closed = close_run_alarms(session, self.run, _utc(time.time()), f"run {how}")
        except UNREACHABLE as err:
            log.warning("alarms: cannot close the alarms of run %d: %s", self.run, err)
            return
        if closed:
            log.info("alarms: closed %d alarm(s) of run %d (%s)", closed, self.run, how)
        self.statuses = {rule.name: AlarmStatus() for rule in self.rules.rules}
        self._occurrence, self._messages = {}, {}
        self._changed = set(self.statuses)
        self._publish()

    def close(self) -> None:
        """Store what is left and stop watching (safe to call if never started)."""
        if self.watch is not None:
            self._store()
            self.watch.close()
            self.watch = None
        self._reap_hooks()

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(
        self,
        decoder: DecoderState,
        counters: IngestCounters,
        acc: RunAccumulator,
        result: RunResult,
        feedback: FeedbackService | None = None,
    ) -> None:
        """One evaluation of every rule (see the module docstring)."""
        now = time.time()
        self._operator_actions(now)
        observations = self.inputs.observe(now, decoder, counters, acc, result, self.watch.latest())
        if feedback is not None:
            observations.update(feedback_observations(feedback.loops.values(), feedback.last))
        values = self._counter_values(decoder, counters)
        increase = {k: int(v - self._counters.get(k, 0)) for k, v in values.items()}
        self._counters = values
        for rule in self.rules.rules:
            reading = rule.read(observations, increase)
            transition = evaluate(
                self.statuses[rule.name],
                rule.debounce,
                reading.severity,
                now,
                reading.violations,
                reading.checks,
                reading.enabled,
                reason=reading.detail,
            )
            if transition is not None:
                message = reading.detail + (f". {rule.guidance}" if rule.guidance else "")
                self._messages[rule.name] = message
                self._note(rule, now, transition, message)
        self._store()
        for announcement in self._announce:
            self._act(*announcement)
        self._announce = []
        self._publish()
        self._reap_hooks()

    @staticmethod
    def _counter_values(decoder: DecoderState, counters: IngestCounters) -> dict[str, float]:
        values = {f"helicity_errors.{k}": v for k, v in decoder.errors.items()}
        values["windows"] = decoder.windows_seen
        values["blocks_lost"] = counters.blocks_lost
        values["blocks_malformed"] = counters.malformed
        return values

    def _note(self, rule: AlarmRule, now: float, transition: Transition, message: str) -> None:
        self._unstored.append((rule.name, now, transition, message))
        self._changed.add(rule.name)
        log.info(
            "alarm %s: %s %s -> %s %s (%s)",
            rule.name,
            transition.from_state,
            transition.from_severity.name,
            transition.to_state,
            transition.to_severity.name,
            transition.reason,
        )
        if transition.annunciate:
            self._announce.append((rule, transition, message))

    def _operator_actions(self, now: float) -> None:
        by_id = {alarm_id: name for name, alarm_id in self._occurrence.items()}
        try:
            with transaction(self.engine) as session:
                actions = operator_actions(session, list(by_id), self._last_action)
        except UNREACHABLE:
            return  # the next evaluation tries again
        for action in actions:
            self._last_action = action.transition_id
            name = by_id.get(action.alarm_id)
            if name is None or self._occurrence.get(name) != action.alarm_id:
                continue  # closed meanwhile
            status = self.statuses[name]
            if action.kind == "shelve" and action.until is not None:
                reason = f"shelved by {action.who} until {action.until.isoformat()}"
                transition = shelve(status, action.until.timestamp(), reason)
            else:
                transition = acknowledge(status, f"acknowledged by {action.who}")
            if transition is not None:
                self._note(self.rules[name], now, transition, self._messages.get(name, ""))

    def _store(self) -> None:
        if not self._unstored:
            return
        try:
            with transaction(self.engine) as session:
                occurrence = dict(self._occurrence)
                for name, now, transition, message in self._unstored:
                    alarm_id = record_transition(
                        session,
                        occurrence.get(name),
                        self.run,
                        name,
                        _utc(now),
                        transition,
                        message,
                    )
                    if alarm_id is None:
                        occurrence.pop(name, None)
                    else:
                        occurrence[name] = alarm_id
        except UNREACHABLE as err:
            log.warning(
                "alarms: %d transitions wait for the database: %s", len(self._unstored), err
            )
            return
        self._occurrence = occurrence
        self._unstored = []

    # -- actions -----------------------------------------------------------------------------

    def _act(self, rule: AlarmRule, transition: Transition, message: str) -> None:
        actions = rule.alarm_class.actions
        severity = transition.to_severity.name
        if "log" in actions:
            level = logging.ERROR if transition.to_severity >= Severity.MAJOR else logging.WARNING
            log.log(level, "ALARM %s %s: %s", rule.name, severity, message)
        if "command" in actions:
            env = {
                **os.environ,
                "MUPNC_ALARM_ID": str(self._occurrence.get(rule.name, "")),
                "MUPNC_ALARM_NAME": rule.name,
                "MUPNC_ALARM_SEVERITY": severity,
                "MUPNC_ALARM_STATE": transition.to_state,
                "MUPNC_ALARM_MESSAGE": message,
                "MUPNC_RUN": str(self.run),
            }
            try:
                self._hooks.append(
                    subprocess.Popen(
                        list(rule.alarm_class.command),
                        env=env,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            except OSError as err:
                log.error(
                    "alarm %s: command hook %s failed: %s",
                    rule.name,
                    rule.alarm_class.command[0],
                    err,
                )
        if "stop_run" in actions and not self._stop_requested:
            self._stop_requested = True
            log.error("alarm %s %s: requesting a run stop (RUN:STOP = STOP)", rule.name, severity)
            epics.caput(self.prefix + "RUN:STOP", "STOP", wait=False)

    def _reap_hooks(self) -> None:
        running = []
        for hook in self._hooks:
            code = hook.poll()
            if code is None:
                running.append(hook)
            elif code != 0:
                log.warning("alarm command hook %s exited with status %d", hook.args[0], code)
        self._hooks = running

    # -- PVs ---------------------------------------------------------------------------------

    def top_alarm(self) -> str:
        """Name of the most severe standing alarm, unacknowledged first ("" if none)."""
        standing = [
            (s.latched, not s.acknowledged, n) for n, s in self.statuses.items() if s.standing
        ]
        return max(standing)[2] if standing else ""

    def _publish(self) -> None:
        if self.publisher is None or self.pvs is None or not self._changed:
            return
        self.publisher.submit(
            write_alarm_pvs(self.pvs, self.statuses, set(self._changed), self.top_alarm())
        )
        self._changed.clear()
