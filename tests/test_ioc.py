"""The soft IOCs over real Channel Access on loopback (pyepics, the EPICS C client).

One IOC subprocess serves a fast-reversal run for the module; tests read every listed
PV, write bad values, stress subscriptions, read back ring slots and flip fault switches.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import epics
import numpy as np
import pytest
from support.chains import chain_of
from support.waiting import wait_for

from mupnc.daq.blocks import WindowBlock
from mupnc.daq.record_fields import description
from mupnc.ioc.server import build_ioc
from mupnc.orchestrate import Chain
from mupnc.sim.faults import FAULT_KINDS
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

PREFIX = f"TIOC{uuid.uuid4().hex[:6].upper()}:"
"""Unique to the session: another test session on this machine may serve ``TIOC:`` too."""
WINDOW_RATE = 1920.0


@pytest.fixture(scope="module")
def ioc(tmp_path_factory, ca_env):
    db = f"sqlite:///{tmp_path_factory.mktemp('ioc') / 'ioc.db'}"
    args = ["ioc", "--run", "7", "--prefix", PREFIX, "--window-rate", str(WINDOW_RATE)]
    with chain_of(db, ca_env, args) as chain:
        wait_for(lambda: epics.caget(PREFIX + "RUN:STATE", timeout=1) == 1, 30, "run 7 served")
        yield chain


def assert_alive(chain: Chain) -> None:
    """The IOC process runs and keeps publishing blocks."""
    before = epics.caget(PREFIX + "DAQ:BLOCK_NUMBER", timeout=5)
    assert chain.failed() is None, "the IOC exited"
    assert before is not None, "DAQ:BLOCK_NUMBER unreadable"
    wait_for(
        lambda: epics.caget(PREFIX + "DAQ:BLOCK_NUMBER", timeout=5) > before,
        5,
        f"a block after block {before}",
    )


def caget_field(name: str):
    pv = epics.PV(name, auto_monitor=False)
    assert pv.wait_for_connection(timeout=5), name
    value = pv.get(timeout=5, use_monitor=False)
    pv.disconnect()
    return value


def listed_pvs() -> dict:
    return build_ioc(PREFIX, SourceConfig(window_rate=WINDOW_RATE), run_number=0).pvdb


def test_every_listed_pv_reads_with_its_documented_type_and_units(ioc):
    for name, channel in listed_pvs().items():
        pv = epics.PV(name, form="ctrl", auto_monitor=False)
        assert pv.wait_for_connection(timeout=5), name
        value = pv.get(timeout=5)
        assert value is not None, name
        assert epics.dbr.Name(pv.ftype).replace("CTRL_", "") == channel.data_type.name, name
        ctrl = pv.get_ctrlvars(timeout=5) or {}
        if getattr(channel, "units", ""):
            assert ctrl["units"] == channel.units, name
        assert caget_field(name + ".DESC") == description(channel.pvspec.doc), name
        if channel.pvspec.record in ("ai", "ao"):
            assert caget_field(name + ".EGU") == channel.units, name
        pv.disconnect()


def test_limits_and_alarm_fields_are_served():
    rate_sp = epics.PV(PREFIX + "BEAM:RATE_SP", form="ctrl")
    ctrl = rate_sp.get_ctrlvars(timeout=5)
    assert (ctrl["lower_ctrl_limit"], ctrl["upper_ctrl_limit"]) == (1e7, 1e11)
    assert ctrl["units"] == "Hz"
    setpoint = epics.caget(PREFIX + "BEAM:RATE_SP", timeout=5)
    rate = epics.PV(PREFIX + "BEAM:RATE", form="ctrl").get_ctrlvars(timeout=5)
    assert rate["lower_alarm_limit"] == pytest.approx(0.1 * setpoint)
    assert rate["lower_warning_limit"] == pytest.approx(0.5 * setpoint)
    assert epics.caget(PREFIX + "BEAM:RATE.HYST", timeout=5) == pytest.approx(0.02 * setpoint)
    assert epics.caget(PREFIX + "BEAM:RATE.SEVR", timeout=5) == 0
    assert epics.caget(PREFIX + "BEAM:RATE.STAT", timeout=5) == 0


BAD_WRITES = [
    ("BEAM:RATE_SP", math.nan),
    ("BEAM:RATE_SP", math.inf),
    ("BEAM:RATE_SP", -math.inf),
    ("BEAM:RATE_SP", 5e11),
    ("BEAM:RATE_SP", 1.0),
    ("BEAM:ON", 7),
    ("RUN:FAULT:STUCK_HELICITY", 2),
    ("RUN:STOP", 5),
]
WIRE_WRITES = [  # sent as such on the wire (pyepics would refuse them client-side)
    ("BEAM:RATE_SP", "fast please"),
    ("BEAM:RATE_SP", ""),
    ("BEAM:RATE_SP", [2e8] * 1000),
    ("BEAM:ON", "MAYBE"),
    ("RUN:FAULT:STUCK_HELICITY", ""),
    ("RUN:FAULT:STUCK_HELICITY", [1, 1]),
]


def check_refused(chain: Chain, suffix: str, before) -> None:
    name = PREFIX + suffix
    assert epics.caget(name, timeout=5) == before
    assert epics.caget(name + ".SEVR", timeout=5) == 0, "a refused put must not alarm the record"
    assert_alive(chain)


@pytest.mark.parametrize(
    ("suffix", "bad"), BAD_WRITES, ids=[f"{s}={b!r}"[:40] for s, b in BAD_WRITES]
)
def test_bad_writes_are_refused_and_the_ioc_survives(ioc, suffix, bad):
    before = epics.caget(PREFIX + suffix, timeout=5)
    epics.caput(PREFIX + suffix, bad, wait=True, timeout=5)
    check_refused(ioc, suffix, before)


@pytest.mark.parametrize(
    ("suffix", "bad"), WIRE_WRITES, ids=[f"{s}={b!r}"[:40] for s, b in WIRE_WRITES]
)
def test_bad_types_and_sizes_on_the_wire_are_refused(ioc, suffix, bad):
    from caproto import CaprotoTimeoutError, ChannelType, ErrorResponseReceived
    from caproto.sync.client import write

    data_type = ChannelType.STRING if isinstance(bad, str) else ChannelType.DOUBLE
    before = epics.caget(PREFIX + suffix, timeout=5)
    with pytest.raises((ErrorResponseReceived, CaprotoTimeoutError)):
        write(PREFIX + suffix, bad, data_type=data_type, notify=True, repeater=False)
    check_refused(ioc, suffix, before)


def test_read_only_pvs_grant_no_write_access(ioc):
    for suffix in ("DAQ:BLOCK", "DAQ:BLOCK_NUMBER", "BEAM:RATE", "RUN:STATE", "DAQ:SCALER:PLUS"):
        pv = epics.PV(PREFIX + suffix)
        assert pv.wait_for_connection(timeout=5)
        assert pv.read_access and not pv.write_access, suffix
        pv.disconnect()


def test_subscribing_while_blocks_flow_does_not_crash_the_server(ioc):
    """Regression for caproto's "deque mutated during iteration": churn subscriptions on the
    busiest PVs while the DAQ publishes at full rate."""
    names = [PREFIX + s for s in ("DAQ:BLOCK", "DAQ:SEQ", "DAQ:SCALER:PLUS", "BEAM:RATE")]
    received = []
    for _ in range(15):
        pvs = [
            epics.PV(n, auto_monitor=True, callback=lambda **kw: received.append(1)) for n in names
        ]
        for pv in pvs:
            pv.wait_for_connection(timeout=5)
        time.sleep(0.1)
        for pv in pvs:
            pv.clear_callbacks()
            pv.disconnect()
    assert received
    assert_alive(ioc)


def test_ring_readback_returns_exactly_a_missed_block(ioc):
    depth = int(epics.caget(PREFIX + "DAQ:RING_DEPTH", timeout=5))
    seen: dict[int, np.ndarray] = {}
    lock = threading.Lock()

    def on_block(value, **_):
        block = WindowBlock.unpack(np.asarray(value))
        with lock:
            seen[block.block_number] = np.array(value, copy=True)

    pv = epics.PV(PREFIX + "DAQ:BLOCK", auto_monitor=True, callback=on_block)
    wait_for(lambda: len(seen) >= 5, 20, "5 blocks")
    pv.clear_callbacks()
    with lock:
        number, wire = max(seen.items())
    slot = epics.caget(f"{PREFIX}DAQ:RING:{number % depth:03d}", timeout=5)
    if WindowBlock.unpack(slot).block_number != number:
        pytest.fail("ring slot overwritten before the read; ring too shallow for the test")
    np.testing.assert_array_equal(slot[: wire.size], wire)
    pv.disconnect()


def test_fault_switch_reaches_the_window_stream(ioc):
    """RUN:FAULT:STUCK_HELICITY=ON makes every reported helicity +1 until switched off."""
    reported: list[np.ndarray] = []
    pv = epics.PV(
        PREFIX + "DAQ:BLOCK",
        auto_monitor=True,
        callback=lambda value, **_: reported.append(WindowBlock.unpack(np.asarray(value))),
    )

    def reported_helicity_with_the_fault(state: str) -> np.ndarray:
        """The reported helicity of the first 5 blocks published after the switch."""
        assert epics.caput(PREFIX + "RUN:FAULT:STUCK_HELICITY", state, wait=True, timeout=5)
        time.sleep(0.3)  # blocks already on their way
        reported.clear()
        wait_for(lambda: len(reported) >= 5, 20, f"5 blocks with the fault {state}")
        return np.concatenate([b.reported_helicity for b in list(reported)[:5]])

    try:
        assert np.all(reported_helicity_with_the_fault("ON") == 1)
        assert set(np.unique(reported_helicity_with_the_fault("OFF"))) == {-1, 1}
    finally:
        pv.clear_callbacks()
        pv.disconnect()
    assert [k.upper() for k in FAULT_KINDS] == [
        n.rsplit(":", 1)[1] for n in listed_pvs() if ":FAULT:" in n
    ]


def test_two_ioc_processes_on_their_own_ports_are_both_reachable(ioc, tmp_path, ca_env):
    """A second IOC (own prefix, served on the other test port) next to the module's IOC."""
    second = Chain(db=f"sqlite:///{tmp_path / 'second.db'}")
    env = {**ca_env["monitor"]}  # the test process serves nothing on this port here
    second.start("ioc", ["ioc", "--run", "8", "--prefix", "TIOC2:"], env)
    try:
        wait_for(lambda: epics.caget("TIOC2:RUN:NUMBER", timeout=1) == 8, 30, "the second IOC")
        assert epics.caget(PREFIX + "RUN:NUMBER", timeout=5) == 7
    finally:
        second.shutdown()


def test_beam_off_trips_and_alarms_the_rate_readback(ioc):
    assert epics.caput(PREFIX + "BEAM:ON", "OFF", wait=True, timeout=5)
    try:
        wait_for(
            lambda: epics.caget(PREFIX + "BEAM:TRIP", as_string=True) == "TRIPPED", 20, "a trip"
        )
        wait_for(lambda: epics.caget(PREFIX + "BEAM:RATE.SEVR") == 2, 20, "LOLO, MAJOR")
        assert epics.caget(PREFIX + "BEAM:RATE.STAT", as_string=True) == "LOLO"
    finally:
        epics.caput(PREFIX + "BEAM:ON", "ON", wait=True, timeout=5)
    wait_for(lambda: epics.caget(PREFIX + "BEAM:RATE.SEVR") == 0, 20, "no alarm with beam on")
    assert epics.caget(PREFIX + "BEAM:TRIP", as_string=True) == "OK"


def test_run_stop_ends_the_run_on_a_pattern_boundary(ioc):
    """Last test of the module: RUN:STOP ends the run; the IOC keeps serving."""
    assert epics.caput(PREFIX + "RUN:STOP", "STOP", wait=True, timeout=5)
    wait_for(lambda: epics.caget(PREFIX + "RUN:STATE", as_string=True) == "ENDED", 20, "ENDED")
    seq = epics.caget(PREFIX + "DAQ:SEQ", timeout=5)
    assert (seq + 1) % 4 == 0  # quartets
    assert ioc.failed() is None
