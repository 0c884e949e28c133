"""A caproto IOC whose ``RUN:NUMBER`` can change without a monitor update being posted, as
after an IOC restart, when a client's channel is connected again but the new IOC's first
update has not arrived yet: ``python unposted_ioc.py PREFIX``.

Serves what :class:`mupnc.monitor.ingest.BlockIngest` connects to (``DAQ:RING_DEPTH``,
``DAQ:BLOCK``), ``RUN:NUMBER`` (1) and ``TEST:SERVE_RUN_UNPOSTED``: a put there changes the
value ``RUN:NUMBER`` returns to a get, and its subscribers are not told."""

from __future__ import annotations

import sys

from caproto.server import PVGroup, pvproperty, run


class UnpostedRun(PVGroup):
    ring_depth = pvproperty(name="DAQ:RING_DEPTH", value=4, read_only=True)
    block = pvproperty(name="DAQ:BLOCK", value=[0.0] * 16, read_only=True)
    run_number = pvproperty(name="RUN:NUMBER", value=1, read_only=True)
    serve_run_unposted = pvproperty(name="TEST:SERVE_RUN_UNPOSTED", value=1)

    @serve_run_unposted.putter
    async def serve_run_unposted(self, instance, value):
        self.run_number._data["value"] = value  # what a get returns; nothing is posted


if __name__ == "__main__":
    ioc = UnpostedRun(prefix=sys.argv[1])
    run(ioc.pvdb, interfaces=["127.0.0.1"], log_pv_names=False)
