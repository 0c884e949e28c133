"""Soft IOCs (caproto): beam line, helicity source / spin rotator, detector DAQ, run control.

The DAQ publishes windows in blocks (one flat float64 array PV, see :mod:`sim.blocks`) at
``block_rate`` Hz, never one CA update per window.  Every publish is paced by the clock,
so no writer loop runs unthrottled (an unthrottled writer crashes caproto 1.3.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from sim.blocks import packed_length
from sim.helicity import PATTERN_SHAPES
from sim.source import SourceConfig, WindowSource

log = logging.getLogger("mupnc.ioc")

PATTERNS = list(PATTERN_SHAPES)
RUN_STATES = ["IDLE", "RUNNING", "ENDED"]


@dataclass(frozen=True)
class DaqLayout:
    """Sizes of the DAQ's array PVs for one configuration."""

    n_channels: int
    block_rate: float
    window_rate: float
    ring_depth: int = 128

    @property
    def nominal_windows(self) -> int:
        return max(1, math.ceil(self.window_rate / self.block_rate))

    @property
    def max_windows(self) -> int:
        """Windows one block may hold: twice nominal, so a late tick can catch up."""
        return 2 * self.nominal_windows

    @property
    def block_length(self) -> int:
        return packed_length(self.max_windows, self.n_channels)


def build_ioc(prefix: str, config: SourceConfig, run_number: int, block_rate: float = 20.0):
    """The IOC's PV groups for a simulated run: returns the top-level :class:`PVGroup`."""
    source = WindowSource(config, stream_id=int(time.time()) & 0x7FFFFFFF)
    layout = DaqLayout(source.n_channels, block_rate, config.window_rate)
    channel_map_json = source.channel_map.to_json()
    daq_cls = _daq_group_class(layout, len(channel_map_json) + 1)

    class MupncIOC(PVGroup):
        beam = SubGroup(BeamGroup, prefix="BEAM:")
        helicity = SubGroup(HelicityGroup, prefix="HEL:")
        daq = SubGroup(daq_cls, prefix="DAQ:")
        run = SubGroup(RunGroup, prefix="RUN:")

        async def run_simulation(self) -> None:
            """Publish the run's settings, then its windows until the run ends."""
            await self.run.number.write(run_number)
            await self.beam.publish_settings(config)
            await self.helicity.publish_settings(config)
            await self.daq.channel_map.write(channel_map_json)
            await self.daq.publish(source, layout, self.run)

    return MupncIOC(prefix=prefix)


class BeamGroup(PVGroup):
    """The muon beam line (simulated)."""

    rate = pvproperty(
        value=0.0, name="RATE", doc="Muon rate readback", units="Hz", read_only=True, precision=3
    )
    momentum = pvproperty(
        value=0.0,
        name="MOMENTUM",
        doc="Central momentum",
        units="MeV/c",
        read_only=True,
        precision=1,
    )
    polarization = pvproperty(
        value=0.0, name="POLARIZATION", doc="Longitudinal polarization", read_only=True, precision=3
    )

    async def publish_settings(self, config: SourceConfig) -> None:
        await self.rate.write(config.muon_rate)
        await self.momentum.write(config.momentum)
        await self.polarization.write(config.polarization)


class HelicityGroup(PVGroup):
    """Helicity source / spin rotator settings."""

    pattern = pvproperty(
        value=PATTERNS[1],
        name="PATTERN",
        dtype=ChannelType.ENUM,
        enum_strings=PATTERNS,
        doc="Helicity pattern shape",
        read_only=True,
    )
    window_rate = pvproperty(
        value=0.0,
        name="WINDOW_RATE",
        doc="Helicity window rate",
        units="Hz",
        read_only=True,
        precision=2,
    )
    delay = pvproperty(
        value=0, name="DELAY", doc="Reporting delay", units="patterns", read_only=True
    )

    async def publish_settings(self, config: SourceConfig) -> None:
        await self.pattern.write(config.pattern)
        await self.window_rate.write(config.window_rate)
        await self.delay.write(config.delay_patterns)


class RunGroup(PVGroup):
    """Run control."""

    number = pvproperty(value=0, name="NUMBER", doc="Run number", read_only=True)
    state = pvproperty(
        value="IDLE",
        name="STATE",
        dtype=ChannelType.ENUM,
        enum_strings=RUN_STATES,
        doc="Run state",
        read_only=True,
    )


def _daq_group_class(layout: DaqLayout, channel_map_chars: int) -> type[PVGroup]:
    """A DAQ group class whose array PVs are sized for ``layout``."""
    zeros = [0.0] * layout.block_length
    counts = [0.0] * layout.n_channels
    attrs = {
        "block": pvproperty(
            value=zeros,
            name="BLOCK",
            max_length=layout.block_length,
            read_only=True,
            doc="Latest window block (flat float64)",
        ),
        "block_number": pvproperty(
            value=-1,
            name="BLOCK_NUMBER",
            read_only=True,
            doc="Number of the latest published block",
        ),
        "seq": pvproperty(
            value=-1, name="SEQ", read_only=True, doc="Sequence number of the latest window"
        ),
        "stream_id": pvproperty(
            value=0, name="STREAM_ID", read_only=True, doc="Identity of this IOC's window stream"
        ),
        "ring_depth": pvproperty(
            value=layout.ring_depth,
            name="RING_DEPTH",
            read_only=True,
            doc="Blocks kept for read-back",
        ),
        "block_rate": pvproperty(
            value=layout.block_rate,
            name="BLOCK_RATE",
            units="Hz",
            read_only=True,
            doc="Block publish rate",
        ),
        "scaler_plus": pvproperty(
            value=counts,
            name="SCALER:PLUS",
            max_length=layout.n_channels,
            read_only=True,
            units="counts",
            doc="Cumulative counts per channel, actual helicity +1",
        ),
        "scaler_minus": pvproperty(
            value=counts,
            name="SCALER:MINUS",
            max_length=layout.n_channels,
            read_only=True,
            units="counts",
            doc="Cumulative counts per channel, actual helicity -1",
        ),
        "channel_map": pvproperty(
            value="",
            name="CHANNEL_MAP",
            dtype=ChannelType.CHAR,
            max_length=channel_map_chars,
            read_only=True,
            doc="Channel map (JSON, char waveform)",
        ),
    }
    for slot in range(layout.ring_depth):
        attrs[f"ring_{slot:03d}"] = pvproperty(
            value=zeros,
            name=f"RING:{slot:03d}",
            max_length=layout.block_length,
            read_only=True,
            doc=f"Ring buffer slot {slot}: block number = slot mod depth",
        )
    return type("DaqGroup", (DaqGroupBase,), attrs)


class DaqGroupBase(PVGroup):
    """Detector DAQ: publishes blocks of windows and keeps helicity-gated scalers."""

    ending: asyncio.Event | None = None

    async def publish(self, source: WindowSource, layout: DaqLayout, run: RunGroup) -> None:
        """Publish due windows every 1/block_rate s until :meth:`end_run`; then mark ENDED."""
        self.ending = asyncio.Event()
        scalers = np.zeros((2, layout.n_channels))
        await self.stream_id.write(source.stream_id)
        await run.state.write("RUNNING")
        period = 1.0 / layout.block_rate
        start = time.monotonic()
        tick = 0
        while True:
            tick += 1
            deadline = start + tick * period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ending.wait(), max(0.0, deadline - time.monotonic()))
            due = int((time.monotonic() - start) * layout.window_rate) - source.next_seq
            if self.ending.is_set():  # the run ends on a pattern boundary
                due = -source.next_seq % source.shape.size
            n = min(due, layout.max_windows)
            if n > 0:
                simulated = source.next_block_of(n)
                block = simulated.block
                wire = block.pack(layout.block_length)
                hel = simulated.actual_helicity
                scalers[0] += block.counts[hel > 0].sum(axis=0)
                scalers[1] += block.counts[hel < 0].sum(axis=0)
                ring = getattr(self, f"ring_{block.block_number % layout.ring_depth:03d}")
                await ring.write(wire)
                await self.scaler_plus.write(scalers[0])
                await self.scaler_minus.write(scalers[1])
                await self.seq.write(int(block.seq[-1]))
                await self.block.write(wire)
                await self.block_number.write(block.block_number)
            if self.ending.is_set() and source.next_seq % source.shape.size == 0:
                break
        await run.state.write("ENDED")
        log.info("run ended after %d windows in %d blocks", source.next_seq, source.next_block)

    def end_run(self) -> None:
        if self.ending is not None:
            self.ending.set()
