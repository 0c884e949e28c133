"""One database poller per process, shared by every dashboard session.

A background thread with its own engine reads, about once a second, the newest run, its new
``result_snapshots`` rows, beam-rate slow-control samples (and the newest beam switch, trip
and rate setpoint) and feedback decisions (ids
greater than the last seen), its cumulative and per-minirun results, its helicity errors, its
feedback loops, its modulation cycles, its measured polarization and the standing alarms
into a lock-protected store that numbers snapshots, samples and decisions with increasing sequence
numbers.  Each browser session holds a cursor
here and asks for the rows since its last sequence number; the poller never touches a Bokeh
document.  The store also says when the database last answered, so a page can show a lost
database.  Writes from the pages (acknowledging alarms) are queued with :meth:`Feed.submit`
and run by the same thread, one transaction each, just before its next poll.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from mupnc.dashboards import queries
from mupnc.dashboards.alarms import AlarmRecord, displayed_alarms
from mupnc.dashboards.records import (
    BeamDifference,
    Channel,
    FeedbackDecision,
    FeedbackLoop,
    MeasuredPolarization,
    MinirunMean,
    Modulation,
    RunInfo,
    Sample,
    Snapshot,
)
from mupnc.db.models import DITHERED
from mupnc.db.session import make_engine, redacted, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """What a session has not shown yet.  ``reset``: the run changed, drop what is shown.

    ``polled`` is when the database last answered; ``poll_error`` the last failure, if the
    newest poll failed.
    """

    run: RunInfo | None
    reset: bool
    snapshots: list[Snapshot]
    latest: Snapshot | None
    channels: tuple[Channel, ...] = ()
    miniruns: tuple[MinirunMean, ...] = ()
    helicity_errors: tuple[tuple[str, int], ...] = ()
    polled: datetime | None = None
    poll_error: str | None = None
    alarms: tuple[AlarmRecord, ...] = ()
    samples: list[Sample] = field(default_factory=list)
    latest_sample: Sample | None = None
    rotator: tuple[Sample, ...] = ()
    """Newest spin-rotator state, setpoint and readback samples (see queries.ROTATOR_PVS)."""
    beam: tuple[BeamDifference, ...] = ()
    """The run's helicity-correlated beam differences."""
    regressed: Channel | None = None
    """The run's combined regressed asymmetry (None: nothing regressed)."""
    feedback: tuple[FeedbackLoop, ...] = ()
    """The run's feedback loops: configured, or that decided (none: no feedback)."""
    decisions: list[FeedbackDecision] = field(default_factory=list)
    """Feedback decisions not shown yet (all held after a reset), oldest first."""
    modulation: Modulation | None = None
    """The run's beam-modulation cycles and sensitivities (None: no cycle yet)."""
    dithered: Channel | None = None
    """The run's combined asymmetry corrected with the dithering sensitivities (None: no
    modulation cycle)."""
    polarization: MeasuredPolarization | None = None
    """The polarization the run's polarimeter measured (None: no polarimeter)."""
    beam_state: tuple[Sample, ...] = ()
    """Newest beam switch, trip and rate setpoint samples (see queries.BEAM_STATE_PVS)."""


Job = Callable[[Session], object]
Done = Callable[[object | None, Exception | None], None]


@dataclass
class _Cursor:
    run: int | None = None
    seq: int = 0
    sample_seq: int = 0
    decision_seq: int = 0


T = TypeVar("T")
RETRY_LOG_EVERY = 60
"""While polls fail (the database is away), repeat the warning every this many polls."""


class _Stream(Generic[T]):
    """Items numbered 1, 2, ... as they arrive; the newest ``maxlen`` are kept (not locked)."""

    def __init__(self, maxlen: int) -> None:
        self.items: deque[tuple[int, T]] = deque(maxlen=maxlen)
        self.seq = 0

    def extend(self, items: list[T]) -> None:
        for item in items:
            self.seq += 1
            self.items.append((self.seq, item))

    def after(self, seq: int) -> list[T]:
        """Items numbered above ``seq`` (all held if ``seq`` fell out of the window)."""
        first = self.items[0][0] if self.items else self.seq + 1
        skip = max(0, seq - first + 1)
        return [item for _, item in itertools.islice(self.items, skip, None)]

    @property
    def newest(self) -> T | None:
        return self.items[-1][1] if self.items else None


class Feed:
    """Polls ``db_url`` every ``interval`` seconds, keeping the newest ``maxlen`` snapshots."""

    def __init__(self, db_url: str, interval: float = 1.0, maxlen: int = 20000) -> None:
        self._engine = make_engine(db_url)
        self._url = redacted(db_url)
        self._interval = interval
        self._lock = threading.Lock()
        self._snapshots: _Stream[Snapshot] = _Stream(maxlen)
        self._samples: _Stream[Sample] = _Stream(maxlen)
        self._decisions: _Stream[FeedbackDecision] = _Stream(maxlen)
        self._loops: tuple[FeedbackLoop, ...] = ()
        self._run: RunInfo | None = None
        self._channels: tuple[Channel, ...] = ()
        self._miniruns: tuple[MinirunMean, ...] = ()
        self._errors: tuple[tuple[str, int], ...] = ()
        self._rotator: tuple[Sample, ...] = ()
        self._beam_state: tuple[Sample, ...] = ()
        self._beam: tuple[BeamDifference, ...] = ()
        self._regressed: Channel | None = None
        self._modulation: Modulation | None = None
        self._dithered: Channel | None = None
        self._polarization: MeasuredPolarization | None = None
        self._alarms: tuple[AlarmRecord, ...] = ()
        self._jobs: queue.SimpleQueue[tuple[Job, Done]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._polled: datetime | None = None
        self._poll_error: str | None = None
        self._cursors: dict[str, _Cursor] = {}
        self._last_id = self._last_sample_id = self._last_decision_id = 0  # poller thread only
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the poller thread."""
        self._thread = threading.Thread(target=self._loop, name="dashboard-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the poller thread and release the database connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._engine.dispose()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:  # keep polling through database outages
                failures += 1
                line = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                if failures % RETRY_LOG_EVERY == 1:  # the first, then every so often
                    log.warning(
                        "dashboard poll of %s failed (%d in a row): %s", self._url, failures, line
                    )
                with self._lock:
                    self._poll_error = line
            else:
                if failures:
                    log.warning(
                        "dashboard poll of %s works again after %d failures", self._url, failures
                    )
                failures = 0
            self._wake.wait(self._interval)
            self._wake.clear()

    def submit(self, job: Job, done: Done) -> None:
        """Run ``job(session)`` in one transaction on the poller thread, then ``done(result,
        error)`` there too (a page hands its own update to its document as a next-tick
        callback).  The poll right after shows the job's effect."""
        self._jobs.put((job, done))
        self._wake.set()

    def _run_jobs(self) -> None:
        while True:
            try:
                job, done = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                with transaction(self._engine) as session:
                    result = job(session)
            except Exception as exc:
                log.warning("dashboard write to %s failed: %s", self._url, exc)
                done(None, exc)
            else:
                done(result, None)

    def poll(self) -> None:
        """Run queued writes, then read the newest run's new snapshots, results, errors,
        feedback decisions and loops, and the alarms once (poller thread)."""
        self._run_jobs()
        with Session(self._engine) as session:
            info = queries.latest_run(session)
            alarms = displayed_alarms(session, None if info is None else info.number)
            if info is None:
                with self._lock:
                    self._alarms = alarms
                    self._polled, self._poll_error = datetime.now(UTC), None
                return
            new_run = self._run is None or self._run.number != info.number
            rows = queries.snapshot_rows(session, info.number, 0 if new_run else self._last_id)
            samples = queries.beam_rate_samples(
                session, info.start, 0 if new_run else self._last_sample_id
            )
            channels = queries.cumulative_channels(session, info.number)
            miniruns = queries.minirun_means(session, info.number)
            errors = queries.helicity_errors(session, info.number)
            rotator = queries.rotator_samples(session, info.start)
            beam_state = queries.beam_state_samples(session)
            beam = queries.beam_differences(session, info.number)
            regressed = queries.corrected_result(session, info.number)
            dithered = queries.corrected_result(session, info.number, DITHERED)
            polarization = queries.measured_polarization(session, info.number)
            decisions = queries.feedback_actions(
                session, info.number, 0 if new_run else self._last_decision_id
            )
            loops = queries.feedback_loops(session, info.number)
            modulation = queries.modulation(session, info)
        if rows:
            self._last_id = rows[-1][0]
        if samples:
            self._last_sample_id = samples[-1][0]
        if decisions:
            self._last_decision_id = decisions[-1][0]
        with self._lock:
            if new_run:
                self._snapshots.items.clear()
                self._samples.items.clear()
                self._decisions.items.clear()
            self._snapshots.extend([snapshot for _, snapshot in rows])
            self._samples.extend([sample for _, sample in samples])
            self._decisions.extend([decision for _, decision in decisions])
            self._loops = loops
            self._run = info
            self._channels, self._miniruns, self._errors = channels, miniruns, errors
            self._rotator, self._beam_state = rotator, beam_state
            self._beam, self._regressed = beam, regressed
            self._modulation, self._dithered = modulation, dithered
            self._polarization = polarization
            self._alarms = alarms
            self._polled, self._poll_error = datetime.now(UTC), None

    def attach(self, session: str) -> None:
        """Give ``session`` a cursor: its first :meth:`since` returns everything held."""
        with self._lock:
            self._cursors[session] = _Cursor()

    def detach(self, session: str) -> None:
        """Drop the cursor of a closed session."""
        with self._lock:
            self._cursors.pop(session, None)

    def since(self, session: str) -> Update:
        """The snapshots, samples and feedback decisions after ``session``'s last sequence
        numbers; advances its cursor."""
        with self._lock:
            cursor = self._cursors[session]
            run = self._run
            reset = run is not None and cursor.run != run.number
            snapshots = self._snapshots.after(0 if reset else cursor.seq)
            samples = self._samples.after(0 if reset else cursor.sample_seq)
            decisions = self._decisions.after(0 if reset else cursor.decision_seq)
            cursor.run = None if run is None else run.number
            cursor.seq, cursor.sample_seq = self._snapshots.seq, self._samples.seq
            cursor.decision_seq = self._decisions.seq
            return Update(
                run,
                reset,
                snapshots,
                self._snapshots.newest,
                self._channels,
                self._miniruns,
                self._errors,
                self._polled,
                self._poll_error,
                self._alarms,
                samples,
                self._samples.newest,
                self._rotator,
                self._beam,
                self._regressed,
                self._loops,
                decisions,
                self._modulation,
                self._dithered,
                self._polarization,
                self._beam_state,
            )

    @property
    def sessions(self) -> int:
        """Number of attached sessions."""
        with self._lock:
            return len(self._cursors)
