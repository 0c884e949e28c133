"""The ``mupnc`` console script (and ``python -m mupnc``): a Ctrl-C that comes while the
command is still loading exits quietly with status 130, like one that comes later; a
signal that comes once the command is done is ignored.

While the command loads, SIGINT only sets a flag: raised as ``KeyboardInterrupt`` inside
the import of a C extension it can come out as an ``ImportError`` (numpy's
``PyCapsule_Import`` of ``datetime`` does that), a traceback and status 1."""

from __future__ import annotations

import signal


def run() -> int:
    interrupted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        try:
            from mupnc.cli import main
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if interrupted:
            return 130
        return main()
    except KeyboardInterrupt:
        return 130
    finally:
        from mupnc.signals import ignore_stop_signals

        ignore_stop_signals()
