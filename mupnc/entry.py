"""The ``mupnc`` console script (and ``python -m mupnc``): a Ctrl-C that comes while the
command is still loading exits quietly with status 130, like one that comes later; a
signal that comes once the command is done is ignored."""

from __future__ import annotations


def run() -> int:
    try:
        from mupnc.cli import main

        return main()
    except KeyboardInterrupt:
        return 130
    finally:
        from mupnc.signals import ignore_stop_signals

        ignore_stop_signals()
