"""Feedback loops in the database: the mode each loop of a run is in now."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mupnc.db.models import FeedbackModeChange


def current_feedback_modes(session: Session, run: int, config: dict | None) -> dict[str, str]:
    """Each loop's mode now: its last run-time switch, else the run configuration's."""
    modes = {
        loop: str(settings.get("mode", "off"))
        for loop, settings in ((config or {}).get("feedback") or {}).items()
    }
    for change in session.scalars(
        select(FeedbackModeChange)
        .where(FeedbackModeChange.run == run)
        .order_by(FeedbackModeChange.id)
    ):
        modes[change.loop] = change.mode
    return modes
