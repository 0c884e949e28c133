"""ORM models (SQLAlchemy 2.0 typed style).  Asymmetries are plain fractions.

Helicity convention: ``helicity`` +1 is right-handed (spin along momentum), -1 left,
0 marks windows whose helicity could not be decoded.  ``minirun = -1`` in
:class:`AsymmetryResult` is the cumulative (whole-run) result.  Times are timezone-aware
(UTC).  Any change here needs a migration in ``db/migrations/versions`` (the test suite
compares the migrated schema with these models).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CUMULATIVE = -1
REGRESSED = "regressed"
DITHERED = "dithered"
"""Channel name of the combined regressed asymmetry in :class:`AsymmetryResult` (a
channel's is ``regressed:CHANNEL``)."""


class UTCDateTime(TypeDecorator):
    """A moment in UTC, timezone-aware on both engines (SQLite itself stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


BIG_ID = BigInteger().with_variant(Integer, "sqlite")
"""64-bit key for tables that grow with running time (SQLite autoincrements only INTEGER)."""


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16))  # starting, running, ended, aborted
    source: Mapped[str] = mapped_column(String(16))  # live, replay, sim
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("runs.number"))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mode: Mapped[str] = mapped_column(String(8))  # alr or afb
    config: Mapped[dict] = mapped_column(JSON)
    """The full run configuration as given (the explicit columns below repeat what is queried)."""
    provenance: Mapped[dict | None] = mapped_column(JSON)
    """For a replay or reanalysis: what was replayed and with which options."""
    target_z: Mapped[int | None]
    """Atomic number of the muonic-atom target (A_FB), None for scattering."""
    momentum: Mapped[float | None] = mapped_column(Float)
    """Central beam momentum, MeV/c."""
    scheme: Mapped[str] = mapped_column(String(16), server_default="fast")
    """Spin-reversal scheme (:class:`mupnc.daq.scheme.Scheme`: fast, slow, kick)."""
    expected_asymmetry: Mapped[float | None] = mapped_column(Float)
    """What the monitor should report for a simulated run (fraction; None for real data)."""
    pattern: Mapped[str | None] = mapped_column(String(32))
    delay_patterns: Mapped[int | None]
    channel_map: Mapped[dict | None] = mapped_column(JSON)
    blinding_checksum: Mapped[str | None] = mapped_column(String(64))
    """Identifies the blinding offset without revealing it (None: unblinded)."""
    slow_controls: Mapped[dict | None] = mapped_column(JSON)
    """Slow-control settings at the start of the run, ``{pv: value}``."""
    blinded: Mapped[bool] = mapped_column(default=False)
    windows: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_windows: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Sequence number of the last window written; a restarted monitor resumes after it."""
    end_reason: Mapped[str | None] = mapped_column(Text)
    """Why an ended or aborted run stopped (e.g. "the IOC ended the run", "closed by alice")."""
    monitor_token: Mapped[str | None] = mapped_column(String(32))
    """The lease of the monitor analysing the run (:mod:`mupnc.db.lease`); None: no monitor."""
    monitor_host: Mapped[str | None] = mapped_column(String(255))
    monitor_pid: Mapped[int | None]
    heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Last flush of the run's monitor (renews the lease)."""


class Minirun(Base):
    __tablename__ = "miniruns"
    __table_args__ = (UniqueConstraint("run", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    index: Mapped[int]
    patterns_good: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The accumulator's sums and moments of this minirun (zlib-compressed JSON), so that a
    restarted monitor continues exactly (:mod:`mupnc.monitor.recorder`)."""
    patterns_beam_cut: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    patterns_modulation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Patterns cut because a beam position monitor read beyond its range."""
    regression_note: Mapped[str | None] = mapped_column(Text)
    """Why this minirun was not regressed (None if it was)."""


class HelicityCounts(Base):
    """Helicity-sorted counts of one channel in one minirun."""

    __tablename__ = "helicity_counts"
    __table_args__ = (UniqueConstraint("run", "minirun", "channel", "helicity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    minirun: Mapped[int]
    channel: Mapped[str] = mapped_column(String(64))
    helicity: Mapped[int]
    counts: Mapped[int] = mapped_column(BigInteger)
    windows: Mapped[int] = mapped_column(BigInteger)
    beam_monitor: Mapped[float] = mapped_column(Float)
    """Beam-monitor integral (muons) over those windows."""


class AsymmetryResult(Base):
    """Physics asymmetry (polarization-corrected) of a channel, ``combined`` or ``charge``;
    the regressed ones beside them as ``regressed`` (combined, with the chi2/ndf of its
    minirun values) and ``regressed:CHANNEL``."""

    __tablename__ = "asymmetry_results"
    __table_args__ = (UniqueConstraint("run", "minirun", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    minirun: Mapped[int]
    channel: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(BigInteger)
    chi2_ndf: Mapped[float | None] = mapped_column(Float)
    estimator: Mapped[str | None] = mapped_column(String(16))
    """On ``combined`` rows: ``integrating`` or ``counting``
    (:mod:`mupnc.monitor.analysis.results`)."""


class BeamDifference(Base):
    """The helicity-correlated difference of one beam variable, ``(mean+ - mean-) / 2``,
    in a minirun (or :data:`CUMULATIVE`), in ``unit`` (:data:`mupnc.daq.beamline.UNITS`)."""

    __tablename__ = "beam_differences"
    __table_args__ = (UniqueConstraint("run", "minirun", "variable"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    minirun: Mapped[int]
    variable: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    width: Mapped[float | None] = mapped_column(Float)
    """RMS of the per-pattern differences."""
    n: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(8))


class RegressionSlope(Base):
    """The slope of a channel's (or ``combined``) measured asymmetry on one beam variable's
    difference, fraction per unit of the variable, in a minirun (or :data:`CUMULATIVE`:
    pooled over the run's miniruns)."""

    __tablename__ = "regression_slopes"
    __table_args__ = (UniqueConstraint("run", "minirun", "channel", "variable"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    minirun: Mapped[int]
    channel: Mapped[str] = mapped_column(String(64))
    variable: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(BigInteger)


class ModulationCycle(Base):
    """One beam-modulation cycle (:mod:`mupnc.monitor.analysis.modulation`): the minirun its
    windows came with, the windows fitted (all coils), the ``dead_coils`` (comma-separated
    names; empty: none) and why it gave no sensitivities (``skipped``; None: it did)."""

    __tablename__ = "modulation_cycles"
    __table_args__ = (UniqueConstraint("run", "cycle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    cycle: Mapped[int]
    minirun: Mapped[int]
    windows: Mapped[int] = mapped_column(BigInteger)
    coils: Mapped[int]
    """Coils driven long enough to be fitted."""
    dead_coils: Mapped[str] = mapped_column(String(256))
    skipped: Mapped[str | None] = mapped_column(Text)


class CoilResponse(Base):
    """One coil's response in one modulation cycle: a beam variable's change per mA of
    the coil's current (``kind`` ``beam``; the variable's unit per mA) or a detector
    channel's (or combined group's: ``scatter``, ``forward``, ``backward``) fractional yield
    change per mA (``kind`` ``detector``), over the coil's ``n`` windows."""

    __tablename__ = "coil_responses"
    __table_args__ = (UniqueConstraint("run", "cycle", "coil", "kind", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    cycle: Mapped[int]
    coil: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(BigInteger)


class DitherSensitivity(Base):
    """A channel's (or ``combined``) dithering sensitivity to one beam variable, fraction
    per unit of the variable, in one modulation ``cycle`` (or :data:`CUMULATIVE`: the run's
    weighted mean of its usable cycles), and the regression's slope minus it
    (``difference``; None when not compared: the regression is not on every variable)."""

    __tablename__ = "dither_sensitivities"
    __table_args__ = (UniqueConstraint("run", "cycle", "channel", "variable"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    cycle: Mapped[int]
    channel: Mapped[str] = mapped_column(String(64))
    variable: Mapped[str] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(BigInteger)
    difference: Mapped[float | None] = mapped_column(Float)
    difference_error: Mapped[float | None] = mapped_column(Float)


class PolarizationResult(Base):
    """The beam polarization the muon polarimeter measured in a minirun (or
    :data:`CUMULATIVE`: the run), :mod:`mupnc.monitor.analysis.polarimetry`: per spin state
    (signed; ``plus`` for helicity +1), the effective one the physics asymmetries are
    divided by, the flip quality ``|P+| - |P-|``, the balance the counts give under a
    complete flip and the counters' counts.  The run's row also holds the combined
    asymmetry divided by the configured polarization (``configured_value``/``_error``)."""

    __tablename__ = "polarization_results"
    __table_args__ = (UniqueConstraint("run", "minirun"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    minirun: Mapped[int]
    plus: Mapped[float | None] = mapped_column(Float)
    plus_error: Mapped[float | None] = mapped_column(Float)
    minus: Mapped[float | None] = mapped_column(Float)
    minus_error: Mapped[float | None] = mapped_column(Float)
    effective: Mapped[float | None] = mapped_column(Float)
    effective_error: Mapped[float | None] = mapped_column(Float)
    flip_quality: Mapped[float | None] = mapped_column(Float)
    flip_quality_error: Mapped[float | None] = mapped_column(Float)
    balance_measured: Mapped[float | None] = mapped_column(Float)
    forward_counts: Mapped[int] = mapped_column(BigInteger)
    backward_counts: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(BigInteger)
    configured_value: Mapped[float | None] = mapped_column(Float)
    configured_error: Mapped[float | None] = mapped_column(Float)


class FeedbackAction(Base):
    """One decision of a feedback loop on one actuator (:mod:`mupnc.monitor.feedback.loop`):
    the input over ``patterns`` good patterns (``value`` ± ``error``: ppm for the charge
    loop, um for the position loop), the setpoint ``before`` and ``after`` (the actuator's
    unit), whether it ``acted``, was ``saturated`` at the clamp or a ``dry_run``, and why.
    ``window_end`` is the run's good patterns at the decision (a restarted monitor resumes
    the loop from the last row)."""

    __tablename__ = "feedback_actions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    loop: Mapped[str] = mapped_column(String(16))
    actuator: Mapped[str] = mapped_column(String(16))
    patterns: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    before: Mapped[float] = mapped_column(Float)
    after: Mapped[float] = mapped_column(Float)
    acted: Mapped[bool]
    saturated: Mapped[bool]
    dry_run: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)


class FeedbackModeChange(Base):
    """A feedback loop switched at run time (``MON:FB:<LOOP>:MODE``, ``mupnc feedback``) to
    ``mode`` (``off``, ``dry_run``, ``on``); the run's configuration gives the mode before
    the first."""

    __tablename__ = "feedback_mode_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    loop: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))


class HelicityError(Base):
    __tablename__ = "helicity_errors"
    __table_args__ = (UniqueConstraint("run", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(BigInteger)


class ResultSnapshot(Base):
    """The running combined asymmetry at one moment, for live and historical plots."""

    __tablename__ = "result_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    patterns_good: Mapped[int] = mapped_column(BigInteger)
    windows: Mapped[int] = mapped_column(BigInteger)
    lost_windows: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    charge_asymmetry: Mapped[float | None] = mapped_column(Float)
    decoder: Mapped[str | None] = mapped_column(String(16))
    """Helicity decoder state: LOCKED, LEARNING or UNLOCKED."""
    windows_held: Mapped[int | None] = mapped_column(BigInteger)
    regressed: Mapped[float | None] = mapped_column(Float)
    """The combined regressed asymmetry then (None: nothing regressed)."""
    regressed_error: Mapped[float | None] = mapped_column(Float)
    """Windows the decoder holds while it learns the helicity sequence."""


class MonitorCheckpoint(Base):
    """Where the monitor of a run stands, written in the same transaction as its results.

    With the ``state`` of every :class:`Minirun` and the :class:`RecordedBlock` rows this is
    all a restarted monitor needs to continue the run without counting a window twice.
    """

    __tablename__ = "monitor_checkpoints"

    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    stream_id: Mapped[int] = mapped_column(BigInteger)
    next_block: Mapped[int] = mapped_column(BigInteger)
    """Number of the first block not yet recorded."""
    accumulator: Mapped[dict] = mapped_column(JSON)
    """Run-level part of ``RunAccumulator.state()`` (everything but the miniruns)."""
    decoder: Mapped[dict] = mapped_column(JSON)
    """The decoder's counters (``DecoderState``) at the checkpoint."""


class RecordedBlock(Base):
    """One window block exactly as ingested, encoded by :mod:`mupnc.db.block_codec` (lossless)."""

    __tablename__ = "recorded_blocks"
    __table_args__ = (
        UniqueConstraint("run", "stream_id", "block_number"),
        Index("ix_recorded_blocks_run_first_seq", "run", "first_seq"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    stream_id: Mapped[int] = mapped_column(BigInteger)
    block_number: Mapped[int] = mapped_column(BigInteger)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    n_windows: Mapped[int]
    n_channels: Mapped[int]
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class Alarm(Base):
    """An alarm and its present condition; the history is in :class:`AlarmTransition`.

    ``severity`` is an EPICS severity name (NO_ALARM, MINOR, MAJOR, INVALID); ``state`` is
    e.g. ``active``, ``cleared``, ``acknowledged``, ``shelved``.
    """

    __tablename__ = "alarms"
    __table_args__ = (Index("ix_alarms_name_since", "name", "since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int | None] = mapped_column(ForeignKey("runs.number"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    message: Mapped[str] = mapped_column(Text, default="")
    acknowledged: Mapped[bool] = mapped_column(default=False)
    shelved_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlarmTransition(Base):
    """One change of an alarm's state or severity, with who or what caused it."""

    __tablename__ = "alarm_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    from_severity: Mapped[str | None] = mapped_column(String(16))
    to_severity: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    who: Mapped[str] = mapped_column(String(64), default="monitor")
    """``monitor`` for automatic transitions, else the operator's name."""


class SlowControlSample(Base):
    """Archiver-like sample of a slow-control PV (EPICS severity and status names)."""

    __tablename__ = "slow_control_samples"
    __table_args__ = (Index("ix_slow_control_samples_pv_time", "pv", "time"),)

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    pv: Mapped[str] = mapped_column(String(128))
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16), default="NO_ALARM")
    status: Mapped[str] = mapped_column(String(16), default="NO_ALARM")
