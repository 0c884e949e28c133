"""A request to stop the monitor, with the reason it is given (stored with the run)."""

from __future__ import annotations

import threading


class StoppedError(Exception):
    """The monitor was asked to stop before it had a run."""


class StopRequest(threading.Event):
    """Set to stop the monitor; :attr:`reason` says why (e.g. ``"SIGTERM"``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = "stopped"

    def request(self, reason: str) -> None:
        """Ask to stop (the first reason given is kept)."""
        if not self.is_set():
            self.reason = reason
            self.set()
