"""The monitor's result PVs (``{prefix}MON:...``), served by caproto in a background thread.

Any EPICS tool sees the running result here.  Values are written from the monitor's
worker thread through :meth:`ResultPublisher.publish`, which hands them to the server's
event loop (caproto objects are only touched inside that loop).  An undefined result
(NaN: nothing analysed yet, a spin state without counts, fewer than two miniruns for
chi2/ndf) is published as NaN with severity INVALID and status UDF, never as a number;
each of these PVs has its own caproto alarm instance (``alarm_group``), so one undefined
value does not mark the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty

from mupnc.monitor.analysis.results import COUNTING, INTEGRATING
from mupnc.monitor.decoding.stream import ERROR_KINDS, LOCK_STATES

ESTIMATORS = [INTEGRATING.upper(), COUNTING.upper()]

_UNDEFINED = {"status": AlarmStatus.UDF, "severity": AlarmSeverity.INVALID_ALARM}
_DEFINED = {"status": AlarmStatus.NO_ALARM, "severity": AlarmSeverity.NO_ALARM}


class ResultGroup(PVGroup):
    asym = pvproperty(
        value=math.nan,
        name="ASYM",
        alarm_group="ASYM",
        read_only=True,
        precision=8,
        doc="Running combined physics asymmetry (fraction)",
    )
    asym_err = pvproperty(
        value=math.nan,
        name="ASYM:ERR",
        alarm_group="ASYM:ERR",
        read_only=True,
        precision=8,
        doc="Statistical error of ASYM",
    )
    chi2_ndf = pvproperty(
        value=math.nan,
        name="CHI2_NDF",
        alarm_group="CHI2_NDF",
        read_only=True,
        precision=3,
        doc="chi2/ndf of minirun means",
    )
    charge_asym = pvproperty(
        value=math.nan,
        name="CHARGE_ASYM",
        alarm_group="CHARGE_ASYM",
        read_only=True,
        precision=8,
        doc="Beam charge asymmetry (fraction)",
    )
    estimator = pvproperty(
        value=ESTIMATORS[0],
        enum_strings=ESTIMATORS,
        dtype=ChannelType.ENUM,
        name="ESTIMATOR",
        read_only=True,
        doc="Estimator of ASYM: per-pattern (integrating) or summed counts (counting)",
    )
    decoder = pvproperty(
        value=LOCK_STATES[1],
        enum_strings=list(LOCK_STATES),
        dtype=ChannelType.ENUM,
        name="DECODER",
        read_only=True,
        doc="Helicity decoder: LOCKED, LEARNING or UNLOCKED",
    )
    windows_held = pvproperty(
        value=0, name="WINDOWS_HELD", read_only=True, doc="Windows waiting for their helicity"
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
        """Write PV values (keyword = :class:`ResultGroup` attribute); a float that is not
        finite is written as NaN with INVALID severity and UDF status."""

        async def write() -> None:
            for name, value in values.items():
                pv = getattr(self.group, name)
                if isinstance(value, float):
                    defined = math.isfinite(value)
                    alarm = _DEFINED if defined else _UNDEFINED
                    await pv.write(value if defined else math.nan, **alarm)
                elif name == "estimator":
                    await pv.write(value.upper())
                else:
                    await pv.write(value)

        self.submit(write())

    def submit(self, coroutine) -> None:
        """Run a coroutine (PV writes) in the server's loop and wait for it."""
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=5)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=5)
