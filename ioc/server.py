"""Soft IOCs (caproto): beam line, helicity source / spin rotator, detector DAQ, run control.

The DAQ publishes windows in blocks (one int32 array PV, see :mod:`mupnc.daq.blocks`) at
``block_rate`` Hz, never one CA update per window.  Every publish is paced by the clock,
so no writer loop runs unthrottled (an unthrottled writer crashes caproto 1.3.0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from mupnc.daq.blocks import (
    CONSUMER_HAS_RUN,
    NO_CONSUMER,
    WindowBlock,
    wire_length,
)
from mupnc.daq.helicity import PATTERN_SHAPES
from mupnc.daq.record_fields import RecordGroup
from mupnc.daq.scheme import ROTATOR_PATTERNS, SCHEMES
from mupnc.ioc.autosave import SAVE_PERIOD, AutosaveError, RunSnapshot
from mupnc.ioc.limits import MAJOR, MINOR, AlarmLimits
from mupnc.ioc.records import (
    PutRefusedError,
    analog_readback,
    block_acknowledgement,
    enum_readback,
    enum_setpoint,
    numeric_setpoint,
)
from mupnc.sim.actuators import (
    ACTUATORS,
    DEFAULT_LIMIT,
    SETPOINT_UNITS,
    ActuatorLimitError,
)
from mupnc.sim.beam import RATE_RANGE
from mupnc.sim.faults import FAULT_KINDS
from mupnc.sim.source import SimulatedBlock, SourceConfig, WindowSource

log = logging.getLogger("mupnc.ioc")

PATTERNS = list(PATTERN_SHAPES)
RUN_STATES = ["IDLE", "RUNNING", "ENDED"]
SCHEME_STATES = [name.upper() for name in SCHEMES]
ROTATOR_STATES = ["PLUS", "MINUS", "RAMPING", "FAULT"]
ROTATOR_PATTERN_STATES = [name.upper() for name in ROTATOR_PATTERNS]
SLOW_PERIOD = 0.5
"""Seconds between updates of the slow readbacks (beam rate, rotator state)."""
RATE_ALARM_FRACTIONS = (0.1, 0.5, 1.5, 2.0, 0.02)
"""BEAM:RATE alarm limits as fractions of the setpoint: LOLO (MAJOR, a trip), LOW (MINOR),
HIGH (MINOR), HIHI (MAJOR), and HYST."""
RING_SECONDS = 20.0
"""Seconds of blocks the ring keeps: a monitor restarted within them loses nothing."""
RING_BYTES = 512 * 2**20
"""Memory the ring of read-back blocks may take; bounds its depth for large blocks."""
DRAIN_TIMEOUT = 2.0
"""Seconds a halting IOC waits for its consumer to take the last block published."""
FINISH_TIMEOUT = 10.0
"""Seconds a finishing IOC waits for its consumer to take the whole ended run (the
monitor looks at RUN:STATE once a second, then drains the ring)."""


def new_stream_id() -> int:
    """A random 31-bit identity for the window stream of one IOC process."""
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class DaqLayout:
    """Sizes of the DAQ's array PVs for one configuration; ``scaler_columns``: the channels
    with helicity-gated scalers (the detectors; a beam position monitor has none)."""

    n_channels: int
    block_rate: float
    window_rate: float
    scaler_columns: tuple[int, ...]

    @property
    def nominal_windows(self) -> int:
        return max(1, math.ceil(self.window_rate / self.block_rate))

    @property
    def max_windows(self) -> int:
        """Windows one block may hold: twice nominal, so a late tick can catch up."""
        return 2 * self.nominal_windows

    @property
    def block_length(self) -> int:
        """int32 words of the array PVs: the largest block, counts of 8 bytes."""
        return wire_length(self.max_windows, self.n_channels)

    @property
    def ring_depth(self) -> int:
        """Blocks kept for read-back: :data:`RING_SECONDS` of blocks (at least 128), fewer
        (at least 16) if that exceeds :data:`RING_BYTES`."""
        wanted = max(128, math.ceil(RING_SECONDS * self.block_rate))
        return max(16, min(wanted, RING_BYTES // (4 * self.block_length)))


GROUPS = ("beam", "rotator", "detector")
"""Groups one IOC process can serve (``mupnc ioc --group``); run control goes with the detector."""


def build_ioc(
    prefix: str,
    config: SourceConfig,
    run_number: int,
    block_rate: float = 20.0,
    groups: tuple[str, ...] = GROUPS,
    blind_box: float | None = None,
    source: WindowSource | None = None,
    clock=None,
    autosave: tuple[Path, RunSnapshot] | None = None,
):
    """The IOC's PV groups for a simulated run: returns the top-level :class:`PVGroup`.

    Every process runs the simulation (it is deterministic from the seed); a process
    serves only the PV ``groups`` it is given.  The detector group carries run control.
    ``blind_box`` not None marks the run blinded (RUN:BLIND = YES) with that box (a
    fraction, 0 = the monitor's default); the blinding seed never leaves the monitor's host.
    ``source`` and ``clock`` replace the simulation and :func:`clock_loop` (a replay,
    :mod:`mupnc.replay_source`).  ``autosave`` = (file, snapshot) keeps the run's state in the file
    (:mod:`ioc.autosave`); a snapshot with ``incarnation`` > 0 is a run this IOC continues.
    """
    unknown = set(groups) - set(GROUPS)
    if unknown or not groups:
        raise ValueError(f"unknown IOC group(s) {sorted(unknown)}; choose from {GROUPS}")
    snapshot = autosave[1] if autosave else None
    if source is None:
        source = WindowSource(
            config, new_stream_id(), incarnation=snapshot.incarnation if snapshot else 0
        )
        if snapshot is not None and snapshot.incarnation > 0:
            _continue_run(source, snapshot, autosave[0])
    layout = DaqLayout(
        source.n_channels,
        block_rate,
        config.window_rate,
        tuple(source.channel_map.detector_columns),
    )
    channel_map_json = source.channel_map.to_json()
    members: dict[str, SubGroup] = {}
    if "beam" in groups:
        members["beam"] = SubGroup(BeamGroup, prefix="BEAM:")
    if "rotator" in groups:
        members["helicity"] = SubGroup(HelicityGroup, prefix="HEL:")
    if "detector" in groups:
        members["daq"] = SubGroup(
            _daq_group_class(layout, len(channel_map_json) + 1), prefix="DAQ:"
        )
        members["run"] = SubGroup(RunGroup, prefix="RUN:")
    ioc_cls = type("MupncIOC", (MupncIOCBase,), members)
    return ioc_cls(
        prefix=prefix,
        source=source,
        layout=layout,
        run_number=run_number,
        blind_box=blind_box,
        clock=clock,
        autosave=autosave,
    )


def _continue_run(source: WindowSource, snapshot: RunSnapshot, path: Path) -> None:
    """Set up ``source`` to carry on the run in ``snapshot`` (saved in ``path``) from where
    the clock is now; :class:`AutosaveError` if a saved actuator setpoint is unusable."""
    if snapshot.muon_rate is not None:
        source.set_muon_rate(snapshot.muon_rate)
    source.set_beam_on(snapshot.beam_on)
    for kind, params in snapshot.faults.items():
        source.set_fault(kind, True, **params)
    for name, setpoint in snapshot.actuators.items():
        if name not in ACTUATORS:
            raise AutosaveError(f"autosave file {path}: unknown actuator {name!r}")
        try:
            source.actuators.set(name, setpoint)
        except (ActuatorLimitError, TypeError) as err:
            raise AutosaveError(
                f"autosave file {path}: {err}; give the run's settings, or remove the file "
                "for a new run"
            ) from None
    config = source.config
    size = source.shape.size if config.scheme == "fast" else 1
    resume = snapshot.resume_seq(time.time(), config.window_rate, size)
    source.skip_to(resume)
    log.warning(
        "continuing run %d (restart %d): windows %d..%d were not published while no IOC ran",
        snapshot.run,
        snapshot.incarnation,
        snapshot.next_seq,
        resume - 1,
    )


class MupncIOCBase(RecordGroup):
    """The served groups, driven by one :class:`WindowSource` clock."""

    def __init__(
        self,
        *args,
        source: WindowSource,
        layout: DaqLayout,
        run_number: int,
        blind_box: float | None = None,
        clock=None,
        autosave: tuple[Path, RunSnapshot] | None = None,
        **kw,
    ):
        self.source = source
        self.clock = clock or clock_loop
        self.layout = layout
        self.run_number = run_number
        self.blind_box = blind_box
        self.autosave = autosave
        self.ending = asyncio.Event()
        self.halted = False
        """Stopped without ending the run (SIGTERM): a restarted IOC continues it."""
        self.published_all = asyncio.Event()
        """Set once the simulation has published its last block."""
        super().__init__(*args, **kw)

    def end_run(self) -> None:
        """End the run on the next pattern boundary (the DAQ then sets RUN:STATE = ENDED)."""
        self.ending.set()

    async def halt(self) -> None:
        """Stop publishing on the next pattern boundary, the run left open (a restarted IOC
        continues it with whole patterns); give the consumer up to :data:`DRAIN_TIMEOUT` s
        to take the last block, then autosave."""
        self.halted = True
        await self._stop_publishing(DRAIN_TIMEOUT, last_block_taken=True)
        self.save()

    async def finish(self) -> None:
        """End the run and wait, at most :data:`FINISH_TIMEOUT` s, until the consumer has
        all of it (``DAQ:CONSUMED`` = :data:`mupnc.daq.blocks.CONSUMER_HAS_RUN`) or if none
        ever connected: how an IOC without autosave stops (SIGTERM, SIGHUP)."""
        await self._stop_publishing(FINISH_TIMEOUT, last_block_taken=False)

    async def _stop_publishing(self, timeout: float, last_block_taken: bool) -> None:
        """Stop on the next pattern boundary and wait, at most ``timeout`` s, for the last
        block and for the consumer to be done: it has the ended run, or none ever connected,
        or (``last_block_taken``) it took the last block published."""
        self.ending.set()
        deadline = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.published_all.wait(), timeout)
        daq = getattr(self, "daq", None)
        while daq is not None and time.monotonic() < deadline:
            consumed = daq.consumed.value
            if consumed in (NO_CONSUMER, CONSUMER_HAS_RUN):
                break
            if last_block_taken and consumed >= daq.block_number.value:
                break
            await asyncio.sleep(0.02)

    async def _show_operator_settings(self, beam, run) -> None:
        """The setpoints a restarted IOC took over from its autosave (:func:`_continue_run`)."""
        source = self.source
        if beam is not None:
            await beam.rate_setpoint.write(source.muon_rate)
            await beam.beam_on.write("ON" if source.beam_switch else "OFF")
            for name, setpoint in source.actuators.setpoints.items():
                await beam.actuator_setpoint(name).write(setpoint)  # and its readback
        if run is not None:
            for kind in source.active_faults:
                await getattr(run, f"fault_{kind}").write("ON")

    def save(self) -> None:
        """Write the autosave file (if any) from the state now."""
        if self.autosave is None:
            return
        path, snapshot = self.autosave
        daq = getattr(self, "daq", None)
        snapshot.next_seq = self.source.next_seq
        if daq is not None:
            snapshot.scaler_plus, snapshot.scaler_minus = daq.scalers.tolist()
        snapshot.muon_rate = self.source.muon_rate
        snapshot.beam_on = self.source.beam_switch
        snapshot.faults = self.source.active_faults
        actuators = getattr(self.source, "actuators", None)
        if actuators is not None:
            snapshot.actuators = dict(actuators.setpoints)
        try:
            snapshot.save(path)
        except AutosaveError as err:  # keep publishing; a restart then loses more
            log.error("%s: the run goes on without autosave", err)

    async def run_simulation(self) -> None:
        """Publish the run's settings, then its windows until the run ends."""
        config = self.source.config
        daq, run = getattr(self, "daq", None), getattr(self, "run", None)
        beam, helicity = getattr(self, "beam", None), getattr(self, "helicity", None)
        snapshot = self.autosave[1] if self.autosave else None
        if snapshot is not None and snapshot.incarnation == 0:
            snapshot.first_seq = self.source.next_seq
        if run is not None:
            await run.number.write(self.run_number)
            await run.first_seq.write(snapshot.first_seq if snapshot else self.source.next_seq)
            if self.blind_box is not None:
                await run.blind.write("YES")
                await run.blind_box.write(self.blind_box)
        if beam is not None:
            await beam.publish_settings(config)
        if snapshot is not None and snapshot.incarnation > 0:
            await self._show_operator_settings(beam, run)
        if helicity is not None:
            await helicity.publish_settings(config)
        if daq is not None:
            await daq.channel_map.write(self.source.channel_map.to_json())
            await daq.stream_id.write(self.source.stream_id)
            await run.state.write("RUNNING")
        try:
            await self.clock(self, daq, beam, helicity)
        finally:
            self.published_all.set()
        if self.halted:
            log.info("stopped at window %d; the run stays open", self.source.next_seq)
            return
        if snapshot is not None:
            snapshot.ended = True
            self.save()
        if run is not None:
            await run.state.write("ENDED")
        log.info(
            "run ended after %d windows in %d blocks", self.source.next_seq, self.source.next_block
        )


def _daq_group_class(layout: DaqLayout, channel_map_chars: int) -> type[PVGroup]:
    """A DAQ group class whose array PVs are sized for ``layout``."""
    counts = [0.0] * len(layout.scaler_columns)
    attrs = {
        "block": pvproperty(
            value=[0],
            name="BLOCK",
            dtype=ChannelType.LONG,
            max_length=layout.block_length,
            read_only=True,
            doc="Latest window block (int32, layout 3)",
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
            max_length=len(layout.scaler_columns),
            read_only=True,
            units="counts",
            doc=(
                "Counts per channel, helicity +1\n"
                "Cumulative counts per detector channel, actual helicity +1"
            ),
        ),
        "scaler_minus": pvproperty(
            value=counts,
            name="SCALER:MINUS",
            max_length=len(layout.scaler_columns),
            read_only=True,
            units="counts",
            doc=(
                "Counts per channel, helicity -1\n"
                "Cumulative counts per detector channel, actual helicity -1"
            ),
        ),
        "consumed": block_acknowledgement(
            "CONSUMED",
            (
                "Last block the consumer took\n"
                "Last block the consumer took, written by it (-1 ready; a replay's flow control)"
            ),
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
            value=[0],
            name=f"RING:{slot:03d}",
            dtype=ChannelType.LONG,
            max_length=layout.block_length,
            read_only=True,
            doc=f"Ring buffer slot {slot}\nRing buffer slot {slot}: block number = slot mod depth",
        )
    return type("DaqGroup", (DaqGroupBase,), attrs)


class DaqGroupBase(RecordGroup):
    """Detector DAQ: publishes blocks of windows and keeps helicity-gated scalers."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.scalers = np.zeros((2, len(self.parent.layout.scaler_columns)))
        """Counts by actual helicity (+1, -1) per detector channel since the run started."""
        autosave = self.parent.autosave
        if autosave is not None and autosave[1].incarnation > 0:
            self.scalers[:] = autosave[1].scaler_plus, autosave[1].scaler_minus

    async def publish_block(self, simulated: SimulatedBlock) -> None:
        """Publish a simulated block, its scalers gated by the actual helicity."""
        counts, hel = simulated.detector_counts, simulated.actual_helicity
        await self.publish(
            simulated.block, counts[hel > 0].sum(axis=0), counts[hel < 0].sum(axis=0)
        )

    async def gate_scalers(self, plus: np.ndarray, minus: np.ndarray) -> None:
        """Add counts per detector channel to the helicity +1 and -1 scalers and publish them."""
        self.scalers[0] += plus
        self.scalers[1] += minus
        await self.scaler_plus.write(self.scalers[0])
        await self.scaler_minus.write(self.scalers[1])

    async def publish(self, block: WindowBlock, plus: np.ndarray, minus: np.ndarray) -> None:
        """Ring slot first, then scalers (+ ``plus``/``minus``), then the block PV (so a
        reader can refill it)."""
        layout = self.parent.layout
        wire = block.pack()
        ring = getattr(self, f"ring_{block.block_number % layout.ring_depth:03d}")
        await ring.write(wire)
        await self.gate_scalers(plus, minus)
        if block.n_windows:
            await self.seq.write(int(block.seq[-1]))
        await self.block.write(wire)
        await self.block_number.write(block.block_number)


class BeamControl(RecordGroup):
    """The muon beam line (simulated): rate setpoint and readback, momentum, polarization,
    and the source's helicity-correlated actuators (:func:`_actuator_pvs`)."""

    rate_setpoint = numeric_setpoint(
        "RATE_SP", "Muon rate setpoint", 1e8, *RATE_RANGE, "Hz", precision=3
    )
    rate = analog_readback(
        "RATE",
        "Muon rate readback (beam monitor)",
        "Hz",
        limits=AlarmLimits(hhsv=MAJOR, hsv=MINOR, lsv=MINOR, llsv=MAJOR),
        display=(0.0, RATE_RANGE[1]),
    )
    momentum = analog_readback("MOMENTUM", "Central momentum", "MeV/c", 1, display=(0.0, 120.0))
    polarization = analog_readback(
        "POLARIZATION", "Beam polarization magnitude", "", 3, display=(0.0, 1.0)
    )
    beam_on = enum_setpoint("ON", "Beam on/off switch", ["OFF", "ON"], "ON")
    trip = enum_readback("TRIP", "Beam trip status", ["OK", "TRIPPED"], "OK")

    def __init__(self, *args, **kw) -> None:
        """The actuators' setpoints accept ± the limits of this run's configuration (the
        source's ``config.actuators``), in force before the IOC serves its first client."""
        super().__init__(*args, **kw)
        configured = self.parent.source.config.actuators
        for name in ACTUATORS:
            limit = configured.actuator(name).limit
            self.actuator_setpoint(name).preset_drive_limits(-limit, limit)

    @rate_setpoint.putter
    async def rate_setpoint(self, instance, value: float) -> None:
        self.parent.source.set_muon_rate(value)
        await self._follow_setpoint(value)

    @beam_on.putter
    async def beam_on(self, instance, value: str) -> None:
        self.parent.source.set_beam_on(value == "ON")

    def actuator_setpoint(self, name: str):
        """The setpoint PV ``HC:<NAME>_SP`` of actuator ``name``."""
        return getattr(self, f"hc_{name}_setpoint")

    async def set_actuator(self, name: str, setpoint: float) -> None:
        """Apply a setpoint (ppm, um) to the source's actuator ``name`` from its next
        block and show it on the readback ``HC:<NAME>``; refused beyond its limit, and by
        a source without actuators (a replay: the recording cannot be changed)."""
        actuators = getattr(self.parent.source, "actuators", None)
        if actuators is None:
            raise PutRefusedError(
                "a replay cannot set the source's actuators: the recording is fixed"
            )
        try:
            actuators.set(name, float(setpoint))
        except ActuatorLimitError as err:
            raise PutRefusedError(str(err)) from None
        await getattr(self, f"hc_{name}").write(float(setpoint))

    async def _follow_setpoint(self, rate: float) -> None:
        """Readback alarm limits follow the setpoint (see :data:`RATE_ALARM_FRACTIONS`)."""
        await self.rate.set_limits(*(f * rate for f in RATE_ALARM_FRACTIONS))

    async def publish_settings(self, config: SourceConfig) -> None:
        await self.rate_setpoint.write(config.muon_rate)
        await self._follow_setpoint(config.muon_rate)
        await self.momentum.write(config.momentum)
        await self.polarization.write(config.polarization)

    async def follow(self, simulated: SimulatedBlock, window_rate: float) -> None:
        """Readbacks from the latest block: mean rate (muons/s) and trip state."""
        block = simulated.block
        if block.n_windows:
            await self.rate.write(float(block.beam_monitor.mean()) * window_rate)
        tripped = not bool(np.all(simulated.beam_on))
        if (self.trip.value == "TRIPPED") != tripped:
            await self.trip.write("TRIPPED" if tripped else "OK")


ACTUATOR_MEANINGS = {
    "charge": "helicity-correlated intensity-asymmetry actuator",
    "x": "helicity-correlated position-difference actuator, x at the target",
    "y": "helicity-correlated position-difference actuator, y at the target",
}
"""What each actuator of :data:`mupnc.sim.actuators.ACTUATORS` is, for its PVs' docs (whose
first 40 characters, the records' DESC, start "HC <name> actuator ...")."""


def _actuator_pvs() -> dict[str, pvproperty]:
    """``BEAM:HC:<NAME>_SP`` (writable, ppm or um, within ± the run's limit, set in
    :meth:`BeamControl.__init__`) and its readback ``BEAM:HC:<NAME>``, per actuator."""
    pvs = {}
    for name in ACTUATORS:
        units, limit, meaning = SETPOINT_UNITS[name], DEFAULT_LIMIT[name], ACTUATOR_MEANINGS[name]
        setpoint = numeric_setpoint(
            f"HC:{name.upper()}_SP",
            f"HC {name} actuator setpoint\n{meaning}: the setpoint (± the run's limit)",
            0.0,
            -limit,
            limit,
            units,
        )

        async def put(group, instance, value, name=name):
            await group.set_actuator(name, value)

        pvs[f"hc_{name}_setpoint"] = setpoint.putter(put)
        pvs[f"hc_{name}"] = analog_readback(
            f"HC:{name.upper()}",
            f"HC {name} actuator readback\n{meaning}: the setpoint the source applies",
            units,
        )
    return pvs


BeamGroup = type("BeamGroup", (BeamControl,), _actuator_pvs())
"""The beam line plus the actuators' setpoints and readbacks ``BEAM:HC:*``."""


class HelicityGroup(RecordGroup):
    """Helicity source / spin rotator: reversal scheme, pattern, rotator setpoint and readback."""

    scheme = enum_readback("SCHEME", "Spin reversal scheme", SCHEME_STATES, SCHEME_STATES[0])
    pattern = enum_readback("PATTERN", "Helicity pattern shape", PATTERNS, PATTERNS[1])
    window_rate = analog_readback("WINDOW_RATE", "Helicity window rate", "Hz", 2)
    delay = pvproperty(
        value=0, name="DELAY", doc="Reporting delay", units="patterns", read_only=True
    )
    settle_time = analog_readback("SETTLE_TIME", "Settle time after a reversal", "s", 6)
    flip_period = analog_readback("FLIP_PERIOD", "Slow rotator: time between flips", "s", 1)
    rotator_pattern = enum_readback(
        "ROTATOR_PATTERN",
        "Slow/kick: spin states of a pattern",
        ROTATOR_PATTERN_STATES,
        ROTATOR_PATTERN_STATES[0],
    )
    kick_turns = pvproperty(
        value=0,
        name="KICK_TURNS",
        doc="Ring kick: turns of the MINUS state",
        units="turns",
        read_only=True,
    )
    kick_precession = analog_readback(
        "KICK_PRECESSION", "Ring kick: spin precession per turn", "deg", 4
    )
    rotator_setpoint = analog_readback(
        "ROTATOR:SP", "Rotator setpoint\nRotator setpoint: +1/-1; kick: turn number", "", 0
    )
    rotator_readback = analog_readback(
        "ROTATOR:RBV",
        "Rotator readback\nRotator readback: +1/-1, 0 while ramping; kick: turn number",
        "",
        0,
    )
    rotator_state = enum_readback("ROTATOR:STATE", "Rotator state", ROTATOR_STATES, "PLUS")

    async def publish_settings(self, config: SourceConfig) -> None:
        await self.scheme.write(config.scheme.upper())
        await self.pattern.write(config.pattern)
        await self.window_rate.write(config.window_rate)
        await self.delay.write(config.delay_patterns)
        await self.settle_time.write(config.settle_time)
        await self.flip_period.write(config.flip_period)
        await self.rotator_pattern.write(config.rotator_pattern.upper())
        await self.kick_turns.write(config.kick.turns[1])
        await self.kick_precession.write(config.degrees_per_turn)

    async def follow(self, simulated: SimulatedBlock) -> None:
        """Rotator setpoint, readback and state at the end of the latest block."""
        if not simulated.block.n_windows:
            return
        setpoint = float(simulated.rotator_setpoint[-1])
        readback = float(simulated.rotator_readback[-1])
        state = rotator_state(setpoint, readback, self.parent.source.config)
        if self.rotator_setpoint.value != setpoint:
            await self.rotator_setpoint.write(setpoint)
        if self.rotator_readback.value != readback:
            await self.rotator_readback.write(readback)
        if self.rotator_state.value != state:
            await self.rotator_state.write(state)


def rotator_state(setpoint: float, readback: float, config: SourceConfig) -> str:
    """PLUS/MINUS when the readback is settled on the setpoint, RAMPING while it moves
    (readback 0), FAULT when it settled elsewhere.  Kick: PLUS is ``kick.turns[0]``
    turns, MINUS ``kick.turns[1]`` (the turns nearest a 180 deg spin rotation by default)."""
    if readback != setpoint:
        return "RAMPING" if readback == 0 and config.scheme == "slow" else "FAULT"
    if config.scheme == "kick":
        return "PLUS" if readback == config.kick.turns[0] else "MINUS"
    return "PLUS" if readback > 0 else "MINUS"


def _fault_switches() -> dict[str, pvproperty]:
    """``RUN:FAULT:<KIND>`` OFF/ON switches, one per :data:`mupnc.sim.faults.FAULT_KINDS`."""
    switches = {}
    for kind in FAULT_KINDS:
        switch = enum_setpoint(
            f"FAULT:{kind.upper()}", f"Inject fault: {kind.replace('_', ' ')}", ["OFF", "ON"], "OFF"
        )

        async def put(group, instance, value, kind=kind):
            group.parent.source.set_fault(kind, value == "ON")
            log.warning("fault %s switched %s", kind, value)

        switches[f"fault_{kind}"] = switch.putter(put)
    return switches


class RunControl(RecordGroup):
    """Run control: number, state and stop."""

    number = pvproperty(value=0, name="NUMBER", doc="Run number", read_only=True)
    first_seq = pvproperty(
        value=0,
        name="FIRST_SEQ",
        doc="Sequence number of the first window\nSequence number of the run's first window",
        read_only=True,
    )
    state = enum_readback("STATE", "Run state", RUN_STATES, "IDLE")
    stop = enum_setpoint(
        "STOP",
        "Write STOP to end the run\nWrite STOP to end the run on a pattern boundary",
        ["-", "STOP"],
        "-",
    )
    blind = enum_readback("BLIND", "Run is blinded", ["NO", "YES"], "NO")
    blind_box = analog_readback("BLIND_BOX", "Blinding box half-width (0 = default)", "", 6)

    @stop.putter
    async def stop(self, instance, value: str) -> None:
        if value == "STOP":
            log.info("RUN:STOP written: ending the run")
            self.parent.end_run()


RunGroup = type("RunGroup", (RunControl,), _fault_switches())
"""Run control plus the simulator's fault-injection switches ``RUN:FAULT:<KIND>``."""


async def clock_loop(ioc: MupncIOCBase, daq, beam, helicity) -> None:
    """Every 1/block_rate s, simulate the windows due by the clock and publish them; slow
    readbacks at most every :data:`SLOW_PERIOD` s.  Ends on a pattern boundary once
    :meth:`MupncIOCBase.end_run` was called."""
    source, layout = ioc.source, ioc.layout
    period = 1.0 / layout.block_rate
    start, origin = time.monotonic(), source.next_seq
    snapshot = ioc.autosave[1] if ioc.autosave else None
    if snapshot is not None and snapshot.incarnation == 0:
        snapshot.epoch = time.time() - origin / layout.window_rate
    last_slow = last_save = -math.inf
    tick = 0
    while True:
        tick += 1
        deadline = start + tick * period
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ioc.ending.wait(), max(0.0, deadline - time.monotonic()))
        due = origin + int((time.monotonic() - start) * layout.window_rate) - source.next_seq
        if time.monotonic() - last_save >= SAVE_PERIOD:
            last_save = time.monotonic()
            ioc.save()
        if ioc.ending.is_set():  # the run ends on a pattern boundary
            due = -source.next_seq % source.shape.size
        n = min(due, layout.max_windows)
        if n > 0:
            simulated = source.next_block_of(n)
            if daq is not None:
                await daq.publish_block(simulated)
            if time.monotonic() - last_slow >= SLOW_PERIOD:
                last_slow = time.monotonic()
                if beam is not None:
                    await beam.follow(simulated, layout.window_rate)
                if helicity is not None:
                    await helicity.follow(simulated)
        if ioc.ending.is_set() and source.next_seq % source.shape.size == 0:
            break
