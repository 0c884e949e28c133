"""The IOC process: serve the PV groups over Channel Access until told to stop.

Signals: the first SIGINT ends the run (the DAQ publishes its last windows and sets
RUN:STATE to ENDED) and the IOC keeps serving, so a monitor can drain every block;
SIGTERM (or a second SIGINT) stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from caproto.asyncio.server import Context

log = logging.getLogger("mupnc.ioc")


async def serve(ioc) -> None:
    """Run the caproto server and the simulation of ``ioc`` (see :func:`ioc.server.build_ioc`)."""
    loop = asyncio.get_running_loop()
    context = Context(ioc.pvdb)
    server = asyncio.create_task(context.run())
    simulation = asyncio.create_task(ioc.run_simulation())
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            log.info("SIGINT: ending the run; still serving (SIGTERM stops)")
            ioc.daq.end_run()
        else:
            server.cancel()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, server.cancel)
    try:
        await server
    except asyncio.CancelledError:
        pass
    finally:
        simulation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulation
