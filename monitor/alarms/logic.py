"""The alarm state machine (pure: no I/O, no clock; times are seconds given by the caller).

Semantics follow the Phoebus alarm server (latch, acknowledge) with JAPAN's debounce:

* **Debounce.**  Each evaluation brings ``violations`` out of ``checks`` (e.g. helicity
  errors among the windows decoded since the last one; a plain condition is one check).
  The *ring* keeps the last ``ring`` checks (rounded up to whole evaluations): the alarm
  condition trips when the ring holds at least ``count`` violations and every evaluation
  of the last ``delay`` seconds had some, and it decays only after a clean stretch, once
  every violation has left the ring.  While tripped, its severity is the highest one
  still in the ring.
* **Latch** (default): the shown severity is the highest seen since the last
  acknowledgement (MINOR, MAJOR, MINOR stays MAJOR); the alarm is OK only after the
  condition recovered *and* an operator acknowledged it, in either order.  Acknowledging
  while the condition is still present re-latches at its present severity; a later rise
  above it annunciates again.  A non-latching alarm follows its condition.
* **Shelving** hides an alarm until a given time: it is still evaluated (and latches),
  but neither annunciated nor counted; when the shelf expires an unacknowledged alarm
  whose condition persists annunciates again.  An alarm that is over (acknowledged and
  recovered) is OK on the shelf too; until the shelf expires it holds a new trip.
* **Gating**: with the gate closed (e.g. beam off) the condition is taken as NO_ALARM
  and the ring is emptied; a latched alarm stays until acknowledged.

States (stored in the database and published): ``ok``, ``active`` (condition present),
``cleared`` (condition gone, latched until acknowledged), ``shelved``; whether it was
acknowledged is a separate flag.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace

from mupnc.daq.severity import Severity

OK, ACTIVE, CLEARED, SHELVED = "ok", "active", "cleared", "shelved"


@dataclass(frozen=True)
class Debounce:
    """Trip after ``count`` violations within ``ring`` checks, lasting ``delay`` s."""

    count: int = 1
    ring: int = 1
    delay: float = 0.0
    latch: bool = True

    def __post_init__(self) -> None:
        if self.count < 1 or self.ring < 1 or self.delay < 0:
            raise ValueError("debounce needs count >= 1, ring >= 1 and delay >= 0")


@dataclass(frozen=True)
class Transition:
    """One change of an alarm's state, severity or acknowledgement."""

    from_state: str
    to_state: str
    from_severity: Severity
    to_severity: Severity
    acknowledged: bool
    reason: str
    annunciate: bool = False
    """True when operators must be told now (actions run): a new or higher unacknowledged
    severity, or an unacknowledged alarm coming back from the shelf."""


@dataclass
class AlarmStatus:
    """Where one alarm stands; changed only by the functions of this module."""

    condition: Severity = Severity.NO_ALARM
    """Severity of the debounced condition now."""
    latched: Severity = Severity.NO_ALARM
    """Severity shown to operators."""
    acknowledged: bool = False
    shelved_until: float | None = None
    ring: deque = field(default_factory=deque)  # (checks, violations, severity) per evaluation
    ring_checks: int = 0
    ring_violations: int = 0
    violating_since: float | None = None

    @property
    def state(self) -> str:
        if self.latched == Severity.NO_ALARM:
            return OK  # over, shelved or not (the shelf still holds a new trip until it expires)
        if self.shelved_until is not None:
            return SHELVED
        return ACTIVE if self.condition > Severity.NO_ALARM else CLEARED

    @property
    def standing(self) -> bool:
        """In alarm and not shelved: counted in summaries, shown in banners."""
        return self.state in (ACTIVE, CLEARED)


def _snapshot(status: AlarmStatus) -> tuple:
    return status.state, status.latched, status.acknowledged


def _transition(status: AlarmStatus, before: tuple, reason: str) -> Transition | None:
    state, latched, _ = before
    if (status.state, status.latched, status.acknowledged) == before:
        return None
    rose = status.latched > latched and not status.acknowledged
    return Transition(
        from_state=state,
        to_state=status.state,
        from_severity=latched,
        to_severity=status.latched,
        acknowledged=status.acknowledged,
        reason=reason,
        annunciate=rose and status.shelved_until is None,
    )


def _push(status: AlarmStatus, debounce: Debounce, checks: int, violations: int, sev) -> None:
    status.ring.append((checks, violations, sev))
    status.ring_checks += checks
    status.ring_violations += violations
    while status.ring and status.ring_checks - status.ring[0][0] >= debounce.ring:
        old_checks, old_violations, _ = status.ring.popleft()
        status.ring_checks -= old_checks
        status.ring_violations -= old_violations


def _clear_ring(status: AlarmStatus) -> None:
    status.ring.clear()
    status.ring_checks = status.ring_violations = 0
    status.violating_since = None


def _debounced(status: AlarmStatus, debounce: Debounce, now: float) -> Severity:
    """The condition's severity from the ring (see the module docstring)."""
    if status.ring_violations == 0:
        return Severity.NO_ALARM
    worst = max((s for _, v, s in status.ring if v > 0), default=Severity.NO_ALARM)
    if status.condition > Severity.NO_ALARM:
        return worst  # tripped: holds until every violation has left the ring
    if status.ring_violations < debounce.count or status.violating_since is None:
        return Severity.NO_ALARM
    if now - status.violating_since < debounce.delay:
        return Severity.NO_ALARM
    return worst


def _relatch(status: AlarmStatus, latch: bool) -> None:
    condition = status.condition
    if condition > status.latched:
        status.latched, status.acknowledged = condition, False
    elif not latch or status.acknowledged:
        # non-latching alarms follow the condition; acknowledged ones follow it downwards
        status.latched = condition
        if condition == Severity.NO_ALARM:
            status.acknowledged = False


def evaluate(
    status: AlarmStatus,
    debounce: Debounce,
    severity: Severity,
    now: float,
    violations: int | None = None,
    checks: int = 1,
    enabled: bool = True,
    reason: str = "",
) -> Transition | None:
    """One evaluation: ``severity`` is the raw severity of a violation (or of the condition,
    for plain conditions); ``violations`` among ``checks`` (default: one check, violated
    when ``severity`` is not NO_ALARM).  ``enabled`` False is a closed gate."""
    before = _snapshot(status)
    expired = status.shelved_until is not None and now >= status.shelved_until
    if expired:
        status.shelved_until = None
    if not enabled:
        _clear_ring(status)
        status.condition = Severity.NO_ALARM
        reason = reason or "gate closed"
    else:
        if violations is None:
            violations = int(severity > Severity.NO_ALARM)
        if checks > 0 or violations > 0:
            _push(status, debounce, checks, violations, Severity(severity))
            if violations == 0:
                status.violating_since = None  # the delay counts uninterrupted violation
            elif status.violating_since is None:
                status.violating_since = now
        status.condition = _debounced(status, debounce, now)
    _relatch(status, debounce.latch)
    out = _transition(status, before, "shelving expired" if expired else reason)
    if out is not None and expired and status.condition and not status.acknowledged:
        out = replace(out, annunciate=True)
    return out


def acknowledge(status: AlarmStatus, reason: str = "acknowledged") -> Transition | None:
    """Operator acknowledgement: OK if the condition is gone, else re-latch at its level.

    None if there is nothing to acknowledge.  The transition says ``acknowledged`` even
    when it ends the alarm (``to_state`` OK; the next occurrence starts unacknowledged)."""
    if status.latched == Severity.NO_ALARM:
        return None
    state, latched, _ = _snapshot(status)
    status.latched = status.condition
    status.acknowledged = status.condition > Severity.NO_ALARM
    return Transition(state, status.state, latched, status.latched, True, reason)


def shelve(status: AlarmStatus, until: float, reason: str = "shelved") -> Transition | None:
    """Hide the alarm until ``until`` (same clock as ``now`` in :func:`evaluate`)."""
    before = _snapshot(status)
    status.shelved_until = until
    return _transition(status, before, reason)
