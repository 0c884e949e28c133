"""Writes and reads that the monitor, CLI and dashboard share (portable SQLite/PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mupnc.db.models import Base, Run

_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert(session: Session, model: type[Base], rows: Sequence[dict], keys: Sequence[str]) -> None:
    """Insert ``rows``, replacing the non-key columns of rows whose ``keys`` already exist."""
    if not rows:
        return
    insert = _INSERT[session.get_bind().dialect.name](model)
    update = {c: insert.excluded[c] for c in rows[0] if c not in keys}
    session.execute(insert.on_conflict_do_update(index_elements=list(keys), set_=update), rows)


RUN_NUMBER_LOCK = 0x6D75_7275  # "muru": PostgreSQL advisory lock serializing run numbers


def allocate_run(
    session: Session,
    *,
    source: str,
    mode: str,
    config: dict,
    replay_of: int | None = None,
    provenance: dict | None = None,
) -> int:
    """Create a run row in state ``starting`` with the next free run number.

    Race-free: on PostgreSQL a transaction-scoped advisory lock serializes allocations by
    any number of hosts until the caller's transaction ends; SQLite serializes writers
    itself.  The explicit configuration columns are taken from ``config`` (keys
    ``target_z``, ``momentum``, ``scheme``, ``expected_asymmetry``, ``pattern``,
    ``delay_patterns``,
    ``channel_map``, ``blinding_checksum``, ``slow_controls``).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(RUN_NUMBER_LOCK)))
    number = (session.scalar(select(func.max(Run.number))) or 0) + 1
    session.add(
        Run(
            number=number,
            state="starting",
            source=source,
            replay_of=replay_of,
            provenance=provenance,
            start=datetime.now(UTC),
            mode=mode,
            config=config,
            blinded=bool(config.get("blinded", False)),
            target_z=config.get("target_z"),
            momentum=config.get("momentum"),
            scheme=config.get("scheme", "fast"),
            expected_asymmetry=config.get("expected_asymmetry"),
            pattern=config.get("pattern"),
            delay_patterns=config.get("delay_patterns"),
            channel_map=config.get("channel_map"),
            blinding_checksum=config.get("blinding_checksum"),
            slow_controls=config.get("slow_controls"),
        )
    )
    session.flush()
    return number
