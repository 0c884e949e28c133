"""Runs the dashboards in a Bokeh server: the shifter page at ``/`` with one database feed for
all its sessions, and the run history at ``/history``."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from functools import partial
from typing import Any

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.server.server import Server
from tornado.ioloop import IOLoop, PeriodicCallback

from mupnc.dashboards.feed import Feed
from mupnc.dashboards.history import make_history
from mupnc.dashboards.live import make_document
from mupnc.dashboards.live_results import ResultFollower
from mupnc.db.session import make_engine, redacted

log = logging.getLogger(__name__)

STOP_POLL_MS = 200


def serve(
    db_url: str,
    port: int = 5006,
    address: str = "127.0.0.1",
    allow_websocket_origin: list[str] | None = None,
    stop: threading.Event | None = None,
    feed: Feed | None = None,
    follow: str | None = None,
    **server_options: Any,
) -> None:
    """Serve ``http://address:port/`` and ``/history`` until SIGINT/SIGTERM or ``stop``.

    Signals are handled only when called from the main thread; from another thread, set
    ``stop`` to shut down.  Without a ``feed`` one is made and started here; the server and
    that feed's poller are stopped before returning (a given feed is left to its owner).
    ``server_options`` go to :class:`bokeh.server.server.Server` (e.g. session lifetimes).
    ``follow``: the monitor's PV prefix, whose newest result the shifter page shows
    between database polls (:mod:`mupnc.dashboards.live_results`; None: the database only).
    """
    stop = threading.Event() if stop is None else stop
    origins = allow_websocket_origin or [f"127.0.0.1:{port}", f"localhost:{port}"]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    io_loop = IOLoop.current()
    own_feed = feed is None
    if feed is None:
        feed = Feed(db_url)
        feed.start()
    archive = make_engine(db_url)
    follower = None if follow is None else ResultFollower(follow)
    previous: dict[int, object] = {}
    try:
        server = Server(
            {
                "/": Application(
                    FunctionHandler(partial(make_document, feed=feed, follower=follower))
                ),
                "/history": Application(FunctionHandler(partial(make_history, engine=archive))),
            },
            io_loop=io_loop,
            port=port,
            address=address,
            allow_websocket_origin=origins,
            **server_options,
        )
        server.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())

        def check() -> None:
            if stop.is_set():
                io_loop.stop()

        watcher = PeriodicCallback(check, STOP_POLL_MS)
        watcher.start()
        log.info("dashboard on http://%s:%d/ reading %s", address, port, redacted(db_url))
        io_loop.start()
        watcher.stop()
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if own_feed:
            feed.stop()
        if follower is not None:
            follower.close()
        archive.dispose()
        io_loop.close(all_fds=True)
        asyncio.set_event_loop(None)
