"""The monitor's newest running asymmetry, followed over Channel Access between database polls.

The database is the record: the shifter page polls it once a second
(:mod:`mupnc.dashboards.feed`), and the monitor writes it once a second.  The monitor also
updates its result PVs four times a second while windows arrive
(:data:`mupnc.monitor.service.RESULT_PUBLISH_INTERVAL`); following ``MON:RUN``,
``MON:ASYM`` and ``MON:ASYM:ERR`` puts the newest value on the page within a second of the
monitor's receipt of a window.  One follower serves every session of a dashboard: pyepics
callbacks only store the newest values, the sessions read them.

The monitor writes ``MON:ASYM`` before ``MON:ASYM:ERR`` and Channel Access delivers one
server's updates in order, so an error's arrival completes the pair.  The time of a
result is ``MON:ASYM``'s timestamp (the monitor's clock at the result).
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("mupnc.dashboards.live_results")


@dataclass(frozen=True)
class LiveResult:
    """The running combined asymmetry (blinded as published) of ``run`` at ``time``."""

    run: int
    time: datetime
    value: float
    error: float


NOT_FOUND_WARNING_SECONDS = 15.0
"""A follower whose PVs are not all connected this long after it starts says so, once."""


class ResultFollower:
    """Follows ``{prefix}MON:RUN``, ``MON:ASYM`` and ``MON:ASYM:ERR`` (pyepics); with no
    monitor serving them, :attr:`newest` stays None, and after ``warn_after`` seconds a
    warning names the PVs not found (the page then shows the database's points only)."""

    def __init__(self, prefix: str, warn_after: float = NOT_FOUND_WARNING_SECONDS) -> None:
        import epics

        self._lock = threading.Lock()
        self._run: int | None = None
        self._asym: tuple[float, float] | None = None  # value, timestamp (Unix s)
        self._newest: LiveResult | None = None
        self._pvs = [
            epics.PV(prefix + "MON:RUN", auto_monitor=True, callback=self._on_run),
            epics.PV(prefix + "MON:ASYM", auto_monitor=True, form="time", callback=self._on_asym),
            epics.PV(prefix + "MON:ASYM:ERR", auto_monitor=True, callback=self._on_error),
        ]
        self._check = threading.Timer(warn_after, self._warn_if_not_found)
        self._check.daemon = True
        self._check.start()

    def _warn_if_not_found(self) -> None:
        missing = [pv.pvname for pv in self._pvs if not pv.connected]
        if missing:
            log.warning(
                "the monitor's result PVs %s are not found over Channel Access: the page "
                "shows the database's points only, without the newest (check "
                "EPICS_CA_ADDR_LIST, or --no-follow)",
                ", ".join(missing),
            )

    @property
    def newest(self) -> LiveResult | None:
        with self._lock:
            return self._newest

    def _on_run(self, value: Any = None, **_: Any) -> None:
        with self._lock:
            self._run = None if value is None else int(value)

    def _on_asym(self, value: Any = None, timestamp: Any = None, **_: Any) -> None:
        with self._lock:
            self._asym = None if value is None else (float(value), float(timestamp))

    def _on_error(self, value: Any = None, **_: Any) -> None:
        with self._lock:
            if value is None or self._asym is None or self._run is None:
                return
            asym, stamp = self._asym
            if math.isfinite(asym) and math.isfinite(float(value)):
                when = datetime.fromtimestamp(stamp, UTC)
                self._newest = LiveResult(self._run, when, asym, float(value))

    def close(self) -> None:
        self._check.cancel()
        for pv in self._pvs:
            pv.clear_callbacks()
            pv.disconnect()
