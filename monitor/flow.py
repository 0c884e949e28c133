"""Flow control of a replay: the monitor tells the IOC which block it has taken.

The monitor writes ``{prefix}DAQ:CONSUMED`` = number of the last block it ingested (-1:
ready, none yet; -3: it has the whole ended run, which a stopping IOC waits for).  A
replaying IOC (:mod:`mupnc.replay_source`) starts when its consumer is ready and never
runs so far ahead of that number that its ring would overwrite a block not yet taken, so
at any speed no block of a replay is lost; a live IOC ignores the PV.  Writes are
rate-limited to one per :data:`MIN_INTERVAL`; while a newer number waits to be written
the monitor polls with :data:`PENDING_WAIT`, so the IOC is never held back long.
"""

from __future__ import annotations

import contextlib
import math
import time

import epics

from mupnc.daq.blocks import CONSUMER_HAS_RUN
from mupnc.monitor.ingest import CA_FAILURES

MIN_INTERVAL = 0.01
"""Seconds between two writes of DAQ:CONSUMED."""
PENDING_WAIT = 0.01
"""Poll wait (s) of the monitor's ingest while an acknowledgement is pending."""
IDLE_WAIT = 0.2
"""Poll wait (s) otherwise (the ingest's default)."""


class ConsumerAck:
    """Acknowledges ingested blocks to the IOC (non-blocking CA puts)."""

    def __init__(self, prefix: str) -> None:
        self._pv = epics.PV(prefix + "DAQ:CONSUMED", auto_monitor=False)
        self._wanted: int | None = None
        self._sent: int | None = None
        self._last_put = -math.inf

    @property
    def wait(self) -> float:
        """How long the ingest may wait for blocks before :meth:`send` should run again."""
        pending = self._wanted != self._sent and self._pv.connected
        return PENDING_WAIT if pending else IDLE_WAIT

    def send(self, last_block: int) -> None:
        """Acknowledge every block up to ``last_block`` (written now or at a later call)."""
        self._wanted = last_block
        now = time.monotonic()
        if last_block == self._sent or now - self._last_put < MIN_INTERVAL:
            return
        if self._pv.connected:
            try:
                self._pv.put(last_block, wait=False)
            except CA_FAILURES:  # the IOC went away meanwhile: the next call writes it
                return
            self._sent, self._last_put = last_block, now

    def finish(self, timeout: float = 2.0) -> None:
        """Say the consumer has every block of the ended run
        (:data:`mupnc.daq.blocks.CONSUMER_HAS_RUN`): a stopping IOC waits for it."""
        if self._pv.wait_for_connection(timeout):
            with contextlib.suppress(*CA_FAILURES):  # the IOC is gone already: nobody waits
                self._pv.put(CONSUMER_HAS_RUN, wait=True, timeout=timeout)
