"""The monitor's result PVs (``{prefix}MON:...``), served by caproto in a background thread.

Any EPICS tool sees the running result here.  Values are written from the monitor's
worker thread through :meth:`ResultPublisher.publish`, which hands them to the server's
event loop (caproto objects are only touched inside that loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty

from mupnc.monitor.decoding.stream import ERROR_KINDS


class ResultGroup(PVGroup):
    asym = pvproperty(
        value=0.0,
        name="ASYM",
        read_only=True,
        precision=8,
        doc="Running combined physics asymmetry (fraction)",
    )
    asym_err = pvproperty(
        value=0.0, name="ASYM:ERR", read_only=True, precision=8, doc="Statistical error of ASYM"
    )
    chi2_ndf = pvproperty(
        value=0.0, name="CHI2_NDF", read_only=True, precision=3, doc="chi2/ndf of minirun means"
    )
    charge_asym = pvproperty(
        value=0.0,
        name="CHARGE_ASYM",
        read_only=True,
        precision=8,
        doc="Beam charge asymmetry (fraction)",
    )
    patterns = pvproperty(value=0, name="PATTERNS", read_only=True, doc="Good patterns")
    windows = pvproperty(value=0, name="WINDOWS", read_only=True, doc="Windows decoded")
    lost_windows = pvproperty(
        value=0, name="LOST_WINDOWS", read_only=True, doc="Windows never received"
    )
    run = pvproperty(value=0, name="RUN", read_only=True, doc="Run number being monitored")
    helicity_errors = pvproperty(
        value=[0] * len(ERROR_KINDS),
        name="HEL_ERRORS",
        max_length=len(ERROR_KINDS),
        read_only=True,
        doc="Helicity error counts: " + ", ".join(ERROR_KINDS),
    )


class ResultPublisher:
    """Serves a :class:`ResultGroup` on this process's CA server port."""

    def __init__(self, prefix: str, extra_groups: tuple[PVGroup, ...] = ()) -> None:
        self.group = ResultGroup(prefix=prefix + "MON:")
        self.extra_groups = extra_groups  # served beside the results (e.g. alarm PVs)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="result-pvs", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _serve(self) -> None:
        async def run_server() -> None:
            pvdb = dict(self.group.pvdb)
            for group in self.extra_groups:
                pvdb.update(group.pvdb)
            context = Context(pvdb)  # caproto queues bind to the running loop
            self._loop.call_soon(self._ready.set)
            await context.run()

        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(run_server())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)

    def publish(self, **values) -> None:
        """Write PV values (keyword = :class:`ResultGroup` attribute); NaN is written as 0."""

        async def write() -> None:
            for name, value in values.items():
                if isinstance(value, float) and not math.isfinite(value):
                    value = 0.0
                await getattr(self.group, name).write(value)

        self.submit(write())

    def submit(self, coroutine) -> None:
        """Run a coroutine (PV writes) in the server's loop and wait for it."""
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=5)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=5)
