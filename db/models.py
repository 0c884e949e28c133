"""ORM models (SQLAlchemy 2.0 typed style).  Asymmetries are plain fractions.

Helicity convention: ``helicity`` +1 is right-handed (spin along momentum), -1 left,
0 marks windows whose helicity could not be decoded.  ``minirun = -1`` in
:class:`AsymmetryResult` is the cumulative (whole-run) result.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CUMULATIVE = -1


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(16))  # starting, running, ended, aborted
    source: Mapped[str] = mapped_column(String(16))  # live, replay, sim
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("runs.number"))
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    mode: Mapped[str] = mapped_column(String(8))  # alr or afb
    config: Mapped[dict] = mapped_column(JSON)
    blinded: Mapped[bool] = mapped_column(default=False)
    windows: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_windows: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=-1)
    """Sequence number of the last window written; a restarted monitor resumes after it."""


class Minirun(Base):
    __tablename__ = "miniruns"
    __table_args__ = (UniqueConstraint("run", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run: Mapped[int] = mapped_column(ForeignKey("runs.number"), index=True)
    index: Mapped[int]
    patterns_good: Mapped[int] = mapped_column(BigInteger)


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
    """Physics asymmetry (polarization-corrected) of a channel, ``combined`` or ``charge``."""

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
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    patterns_good: Mapped[int] = mapped_column(BigInteger)
    windows: Mapped[int] = mapped_column(BigInteger)
    lost_windows: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)
    error: Mapped[float | None] = mapped_column(Float)
    charge_asymmetry: Mapped[float | None] = mapped_column(Float)
