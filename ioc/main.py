"""The IOC process: serve the PV groups over Channel Access until told to stop.

Signals: the first SIGINT ends the run (the DAQ publishes its last windows and sets
RUN:STATE to ENDED) and the IOC keeps serving, so a monitor can drain every block.
SIGTERM and SIGHUP (the terminal closed) end the run too and stop the server once the
monitor has all of it (at most ``FINISH_TIMEOUT`` s); with ``--autosave`` they instead
stop publishing with the run left open, let the monitor take the last block and autosave,
so a restarted IOC continues the run.  A second signal stops the server at once.  If the
simulation fails, the server stops too and the error propagates (non-zero exit).
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


class BeaconFailureOnce(logging.Filter):
    """caproto logs a traceback for every beacon it cannot send (no CA repeater listens at
    the beacon address: ``Connection refused``), every 15 s for as long as the IOC runs.
    The first becomes one line naming the address; the others are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.told: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Failed to send beacon"):
            return True
        address = ":".join(map(str, record.args[0])) if record.args else "?"
        if address in self.told:
            return False
        self.told.add(address)
        record.msg = (
            "no CA repeater answers at %s: clients there get no beacons (start caRepeater, "
            "or set EPICS_CAS_BEACON_ADDR_LIST); said once"
        )
        record.args, record.exc_info, record.exc_text = (address,), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_caproto_notes() -> None:
    """Drop those notes from every handler of the root logger (call before building PVs),
    and say a failing beacon once (:class:`BeaconFailureOnce`)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_backlog_note)
    logging.getLogger("caproto.ctx").addFilter(BeaconFailureOnce())


async def serve(ioc) -> None:
    """Run the caproto server and the simulation of ``ioc`` (see
    :func:`mupnc.ioc.server.build_ioc`)."""
    loop = asyncio.get_running_loop()
    server = asyncio.create_task(Context(ioc.pvdb).run())
    simulation = asyncio.create_task(ioc.run_simulation())
    signals = 0

    def stop_now() -> bool:
        """A second signal of any kind stops the server at once."""
        nonlocal signals
        signals += 1
        if signals > 1:
            server.cancel()
        return signals > 1

    def on_sigint() -> None:
        if not stop_now():
            log.info("SIGINT: ending the run; still serving (SIGTERM stops)")
            ioc.end_run()

    def on_simulation_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            server.cancel()

    async def stop(how) -> None:
        await how()
        server.cancel()

    def on_stop(sig: signal.Signals) -> None:
        if stop_now():
            return
        if ioc.ending.is_set():
            log.info("%s: stopping; the run was ended (the next IOC starts a new one)", sig.name)
            stopping.append(asyncio.ensure_future(stop(ioc.finish)))
        elif ioc.autosave is not None:
            log.info("%s: stopping with the run left open (autosaved)", sig.name)
            stopping.append(asyncio.ensure_future(stop(ioc.halt)))
        else:
            log.info("%s: ending the run; stopping once the monitor has all of it", sig.name)
            stopping.append(asyncio.ensure_future(stop(ioc.finish)))

    stopping: list[asyncio.Future] = []
    simulation.add_done_callback(on_simulation_done)
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_stop, sig)
    with contextlib.suppress(asyncio.CancelledError):
        await server
    if not simulation.done():
        simulation.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulation
    elif not simulation.cancelled() and simulation.exception() is not None:
        raise simulation.exception()
