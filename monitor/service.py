"""The online monitor: ingest → decode → accumulate → database and result PVs.

One worker thread (the caller of :meth:`OnlineMonitor.run`) does all CA reads, numeric
work and database writes; pyepics callbacks only enqueue (see :mod:`monitor.ingest`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine, update

from db.models import Run
from db.session import transaction
from monitor.accumulator import RunAccumulator
from monitor.decoder import ERROR_KINDS, HelicityDecoder
from monitor.ingest import BlockIngest
from monitor.publisher import ResultPublisher
from monitor.recorder import record
from monitor.results import run_result
from sim.channel_map import ChannelMap

log = logging.getLogger("mupnc.monitor")


@dataclass(frozen=True)
class RunSettings:
    """What the monitor reads from the IOCs at the start of a run."""

    run: int
    pattern: str
    delay_patterns: int
    polarization: float
    channel_map: ChannelMap


class OnlineMonitor:
    def __init__(
        self,
        prefix: str,
        engine: Engine,
        minirun_patterns: int = 9000,
        flush_interval: float = 1.0,
        publisher: ResultPublisher | None = None,
    ) -> None:
        self.prefix = prefix
        self.engine = engine
        self.minirun_patterns = minirun_patterns
        self.flush_interval = flush_interval
        self.publisher = publisher

    def _wait_for_run(self, ingest: BlockIngest, stop: threading.Event) -> RunSettings:
        while not stop.is_set():
            if ingest.caget("RUN:STATE", as_string=True) in ("RUNNING", "ENDED"):
                break
            stop.wait(0.2)
        return RunSettings(
            run=int(ingest.caget("RUN:NUMBER")),
            pattern=str(ingest.caget("HEL:PATTERN", as_string=True)),
            delay_patterns=int(ingest.caget("HEL:DELAY")),
            polarization=float(ingest.caget("BEAM:POLARIZATION")),
            channel_map=ChannelMap.from_json(ingest.caget("DAQ:CHANNEL_MAP", as_string=True)),
        )

    def run(self, stop: threading.Event) -> int:
        """Monitor one run until the IOC ends it (or ``stop`` is set); returns the run number."""
        ingest = BlockIngest(self.prefix)
        settings = self._wait_for_run(ingest, stop)
        n_channels = len(settings.channel_map.channels)
        decoder = HelicityDecoder(settings.pattern, settings.delay_patterns, n_channels)
        acc = RunAccumulator(settings.channel_map, decoder.size, self.minirun_patterns)
        with transaction(self.engine) as session:
            session.execute(update(Run).where(Run.number == settings.run).values(state="running"))
        log.info(
            "monitoring run %d (%s, delay %d patterns, %d channels)",
            settings.run,
            settings.pattern,
            settings.delay_patterns,
            n_channels,
        )

        def flush(state: str) -> None:
            result = run_result(acc, settings.polarization)
            lost = decoder.state.errors["missed_windows"]
            record(
                self.engine,
                settings.run,
                acc,
                decoder.state,
                result,
                settings.polarization,
                lost,
                state,
            )
            if self.publisher is not None:
                self.publisher.publish(
                    run=settings.run,
                    asym=result.combined.value,
                    asym_err=result.combined.error,
                    chi2_ndf=result.chi2_ndf,
                    charge_asym=result.charge_asymmetry.value,
                    patterns=result.patterns_good,
                    windows=decoder.state.windows_released,
                    lost_windows=lost,
                    helicity_errors=[decoder.state.errors[k] for k in ERROR_KINDS],
                )

        next_flush = time.monotonic() + self.flush_interval
        while not stop.is_set():
            for block in ingest.next_blocks():
                acc.add(decoder.feed(block))
            if time.monotonic() >= next_flush:
                next_flush += self.flush_interval
                if ingest.caget("RUN:STATE", as_string=True) == "ENDED":
                    break
                flush("running")
        else:
            flush("running")  # stopped mid-run: leave the run open for a restarted monitor
            return settings.run
        # Run over: everything the IOC published is still in its ring; take it all.
        last_block = int(ingest.caget("DAQ:BLOCK_NUMBER"))
        for block in ingest.next_blocks(wait=0.05) + ingest.catch_up(last_block):
            acc.add(decoder.feed(block))
        acc.add(decoder.flush())
        flush("ended")
        log.info(
            "run %d ended: %d windows, %d lost",
            settings.run,
            decoder.state.windows_released,
            decoder.state.errors["missed_windows"],
        )
        return settings.run
