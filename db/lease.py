"""One monitor per run: a lease in the run's row, renewed by every flush of its monitor.

A monitor takes the lease before it reads or writes anything of the run (:func:`take`);
each flush renews it in the same transaction as the results (:func:`renew`), so a monitor
that lost it writes nothing more; the run's end releases it (:func:`end_run`).  A lease
whose heartbeat is older than :data:`LEASE_SECONDS` has expired: its monitor was killed
(or stalled that long), and the next monitor may take the run over and resume it; a
holder on the same host whose process is gone is taken over at once.  Both
steps are single conditional UPDATEs, atomic on SQLite and PostgreSQL alike.  Heartbeats
are written with the monitor host's clock: hosts sharing a database keep NTP time.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from mupnc.db.alarms import close_run_alarms
from mupnc.db.models import Run

LEASE_SECONDS = 15.0
"""A lease not renewed for this long has expired (the monitor renews it every second)."""

OPEN_STATES = ("starting", "running")


class LeaseHeldError(Exception):
    """Another monitor holds a live lease on the run."""


class LeaseLostError(Exception):
    """This monitor's lease was taken over (it had expired): it must stop writing."""


@dataclass(frozen=True)
class MonitorHolder:
    """Who holds a lease: host, process and a token unique to this monitor."""

    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def _expired(now: datetime) -> datetime:
    return now - timedelta(seconds=LEASE_SECONDS)


def monitor_alive(run: Run, now: datetime) -> bool:
    """Whether a monitor holds a lease on ``run`` that has not expired."""
    return (
        run.monitor_token is not None
        and run.heartbeat is not None
        and run.heartbeat >= _expired(now)
    )


def holder_text(run: Run, now: datetime) -> str:
    """``pid 123 on host-a (heartbeat 2 s ago)``."""
    ago = (now - run.heartbeat).total_seconds() if run.heartbeat else float("nan")
    return f"pid {run.monitor_pid} on {run.monitor_host} (heartbeat {ago:.0f} s ago)"


def _claim(session: Session, number: int, holder: MonitorHolder, now: datetime, *held_if) -> bool:
    """Write ``holder`` into the run's lease where ``held_if`` holds; whether it did."""
    return (
        session.execute(
            update(Run)
            .where(Run.number == number, or_(*held_if))
            .values(
                monitor_token=holder.token,
                monitor_host=holder.host,
                monitor_pid=holder.pid,
                heartbeat=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


def _dead_here(run: Run) -> bool:
    """Whether the lease's holder ran on this host and that process is gone (killed)."""
    if run.monitor_host != socket.gethostname() or run.monitor_pid is None:
        return False
    try:
        os.kill(run.monitor_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def take(session: Session, number: int, holder: MonitorHolder, now: datetime) -> None:
    """Take the lease of run ``number`` for ``holder``: free, expired, ``holder``'s own, or
    held by a process of this host that is gone; :class:`LeaseHeldError` naming the holder
    otherwise, ``LookupError`` if the run does not exist."""
    if _claim(
        session,
        number,
        holder,
        now,
        Run.monitor_token.is_(None),
        Run.heartbeat.is_(None),
        Run.heartbeat < _expired(now),
        Run.monitor_token == holder.token,
    ):
        return
    run = session.get(Run, number)
    if run is None:
        raise LookupError(f"run {number} is not in the database")
    if _dead_here(run) and _claim(
        session, number, holder, now, Run.monitor_token == run.monitor_token
    ):
        return
    raise LeaseHeldError(
        f"run {number} is already monitored by {holder_text(run, now)}; one monitor per run"
    )


def renew(session: Session, number: int, holder: MonitorHolder, now: datetime) -> None:
    """Renew ``holder``'s lease (in the flush's transaction); :class:`LeaseLostError` if it is
    no longer ``holder``'s."""
    renewed = session.execute(
        update(Run)
        .where(Run.number == number, Run.monitor_token == holder.token)
        .values(heartbeat=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if renewed != 1:
        raise LeaseLostError(
            f"run {number}: this monitor's lease expired and another monitor took the run over"
        )


def end_run(session: Session, number: int, state: str, reason: str, now: datetime) -> bool:
    """End run ``number`` (``state`` ended or aborted) with ``reason``: release its lease and
    close its alarms (kept in the history).  False if the run was not open (nothing done)."""
    ended = session.execute(
        update(Run)
        .where(Run.number == number, Run.state.in_(OPEN_STATES))
        .values(state=state, end=now, end_reason=reason, monitor_token=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if ended:
        close_run_alarms(session, number, now, f"run {state}: {reason}")
    return bool(ended)
