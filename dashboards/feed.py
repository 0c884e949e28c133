"""One database poller per process, shared by every dashboard session.

A background thread with its own engine reads, about once a second, the newest run, its new
``result_snapshots`` rows (id greater than the last seen) and its cumulative per-channel
results into a lock-protected store that numbers snapshots with increasing sequence numbers.
Each browser session holds a cursor here and asks for the rows since its last sequence number;
the poller never touches a Bokeh document.  Asymmetries stay plain fractions.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import CUMULATIVE, AsymmetryResult, ResultSnapshot, Run
from db.session import make_engine, redacted

log = logging.getLogger(__name__)

_LAST_CHANNELS = ("combined", "charge")


@dataclass(frozen=True)
class RunInfo:
    """The run on display; ``expected`` is the injected asymmetry (fraction) if known."""

    number: int
    state: str
    mode: str
    start: datetime
    blinded: bool
    expected: float | None


@dataclass(frozen=True)
class Snapshot:
    """One ``result_snapshots`` row; ``value``/``error`` are fractions, None early in a run."""

    time: datetime
    patterns_good: int
    windows: int
    lost_windows: int
    value: float | None
    error: float | None


@dataclass(frozen=True)
class Channel:
    """Cumulative asymmetry (fraction) of one channel, ``combined`` or ``charge``."""

    name: str
    value: float | None
    error: float | None


@dataclass(frozen=True)
class Update:
    """What a session has not shown yet.  ``reset``: the run changed, drop what is shown."""

    run: RunInfo | None
    reset: bool
    snapshots: list[Snapshot]
    latest: Snapshot | None
    channels: tuple[Channel, ...]


@dataclass
class _Cursor:
    run: int | None = None
    seq: int = 0


def _utc(t: datetime) -> datetime:
    """SQLite returns naive datetimes; the monitor writes UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _run_info(run: Run) -> RunInfo:
    config = run.config or {}
    expected = config.get("asymmetry")
    return RunInfo(
        number=run.number,
        state=run.state,
        mode=str(config.get("mode", run.mode)),
        start=_utc(run.start),
        blinded=bool(config.get("blinded", run.blinded)),
        expected=None if expected is None else float(expected),
    )


def _snapshot(row: ResultSnapshot) -> Snapshot:
    return Snapshot(
        time=_utc(row.time),
        patterns_good=row.patterns_good,
        windows=row.windows,
        lost_windows=row.lost_windows,
        value=row.value,
        error=row.error,
    )


def _channel_order(channel: Channel) -> tuple[int, str]:
    name = channel.name
    return (_LAST_CHANNELS.index(name) + 1 if name in _LAST_CHANNELS else 0, name)


class Feed:
    """Polls ``db_url`` every ``interval`` seconds, keeping the newest ``maxlen`` snapshots."""

    def __init__(self, db_url: str, interval: float = 1.0, maxlen: int = 20000) -> None:
        self._engine = make_engine(db_url)
        self._url = redacted(db_url)
        self._interval = interval
        self._lock = threading.Lock()
        self._rows: deque[tuple[int, Snapshot]] = deque(maxlen=maxlen)
        self._seq = 0
        self._run: RunInfo | None = None
        self._channels: tuple[Channel, ...] = ()
        self._cursors: dict[str, _Cursor] = {}
        self._last_id = 0  # poller thread only
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the poller thread."""
        self._thread = threading.Thread(target=self._loop, name="dashboard-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the poller thread and release the database connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._engine.dispose()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # keep polling through database outages
                log.warning("dashboard poll of %s failed: %s", self._url, exc)
            self._stop.wait(self._interval)

    def poll(self) -> None:
        """Read the newest run's new snapshots and channel results once (poller thread)."""
        with Session(self._engine) as session:
            run = session.scalars(select(Run).order_by(Run.number.desc()).limit(1)).first()
            if run is None:
                return
            info = _run_info(run)
            new_run = self._run is None or self._run.number != info.number
            after = 0 if new_run else self._last_id
            rows = session.scalars(
                select(ResultSnapshot)
                .where(ResultSnapshot.run == info.number, ResultSnapshot.id > after)
                .order_by(ResultSnapshot.id)
            ).all()
            results = session.scalars(
                select(AsymmetryResult).where(
                    AsymmetryResult.run == info.number, AsymmetryResult.minirun == CUMULATIVE
                )
            ).all()
            snapshots = [_snapshot(r) for r in rows]
            channels = tuple(
                sorted((Channel(r.channel, r.value, r.error) for r in results), key=_channel_order)
            )
        if rows:
            self._last_id = rows[-1].id
        with self._lock:
            if new_run:
                self._rows.clear()
            for s in snapshots:
                self._seq += 1
                self._rows.append((self._seq, s))
            self._run = info
            self._channels = channels

    def attach(self, session: str) -> None:
        """Give ``session`` a cursor: its first :meth:`since` returns everything held."""
        with self._lock:
            self._cursors[session] = _Cursor()

    def detach(self, session: str) -> None:
        """Drop the cursor of a closed session."""
        with self._lock:
            self._cursors.pop(session, None)

    def since(self, session: str) -> Update:
        """The snapshots after ``session``'s last sequence number; advances its cursor."""
        with self._lock:
            cursor = self._cursors[session]
            run = self._run
            reset = run is not None and cursor.run != run.number
            first = self._rows[0][0] if self._rows else self._seq + 1
            skip = 0 if reset else max(0, cursor.seq - first + 1)
            snapshots = [s for _, s in itertools.islice(self._rows, skip, None)]
            cursor.run = None if run is None else run.number
            cursor.seq = self._seq
            latest = self._rows[-1][1] if self._rows else None
            return Update(run, reset, snapshots, latest, self._channels)

    @property
    def sessions(self) -> int:
        """Number of attached sessions."""
        with self._lock:
            return len(self._cursors)
