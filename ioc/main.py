"""The IOC process: serve the PV groups over Channel Access until told to stop.

Signals: the first SIGINT ends the run (the DAQ publishes its last windows and sets
RUN:STATE to ENDED) and the IOC keeps serving, so a monitor can drain every block;
SIGTERM stops publishing with the run left open, lets the monitor take the last block,
autosaves (``--autosave``: a restarted IOC continues the run) and stops the server; a
second SIGINT stops the server at once.  If the simulation fails, the server
stops too and the error propagates (non-zero exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from caproto.asyncio.server import Context

log = logging.getLogger("mupnc.ioc")


def _not_backlog_note(record: logging.LogRecord) -> bool:
    """caproto notes, once per large array PV, that it shortened the subscription backlog:
    by design here (blocks and ring slots are large arrays), so not worth a warning each."""
    return "has the potential to take up considerable memory" not in record.getMessage()


def quiet_backlog_notes() -> None:
    """Drop those notes from every handler of the root logger (call before building PVs)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_backlog_note)


async def serve(ioc) -> None:
    """Run the caproto server and the simulation of ``ioc`` (see
    :func:`mupnc.ioc.server.build_ioc`)."""
    loop = asyncio.get_running_loop()
    server = asyncio.create_task(Context(ioc.pvdb).run())
    simulation = asyncio.create_task(ioc.run_simulation())
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            log.info("SIGINT: ending the run; still serving (SIGTERM stops)")
            ioc.end_run()
        else:
            server.cancel()

    def on_simulation_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            server.cancel()

    async def halt() -> None:
        await ioc.halt()
        server.cancel()

    def on_sigterm() -> None:
        log.info("SIGTERM: stopping with the run left open")
        halting.append(asyncio.ensure_future(halt()))

    halting: list[asyncio.Future] = []
    simulation.add_done_callback(on_simulation_done)
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    with contextlib.suppress(asyncio.CancelledError):
        await server
    if not simulation.done():
        simulation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulation
    elif not simulation.cancelled() and simulation.exception() is not None:
        raise simulation.exception()
