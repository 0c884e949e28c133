"""How a command is stopped: SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed,
the ssh connection dropped) all ask it to stop cleanly; a second one stops it at once."""

from __future__ import annotations

import signal

from mupnc.monitor.stop import StopRequest

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopNow(KeyboardInterrupt):
    """A second stop signal: stop at once (``mupnc`` exits with status 130)."""


def stop_on_signals() -> StopRequest:
    """A :class:`StopRequest` the first of :data:`STOP_SIGNALS` sets (its reason: the
    signal's name); a second raises :class:`StopNow` in the main thread."""
    stop = StopRequest()

    def handle(signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            raise StopNow(f"second stop signal ({name})")
        stop.request(name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handle)
    return stop


def ignore_stop_signals() -> None:
    """From now on :data:`STOP_SIGNALS` are ignored: the command is finishing (ending its
    run, exiting) and a late signal must not cut that short or change its exit status."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
