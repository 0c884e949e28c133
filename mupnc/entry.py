"""The ``mupnc`` console script (and ``python -m mupnc``): a Ctrl-C that comes while the
command is still loading exits quietly with status 130, like one that comes later."""

from __future__ import annotations


def run() -> int:
    try:
        from mupnc.cli import main

        return main()
    except KeyboardInterrupt:
        return 130
