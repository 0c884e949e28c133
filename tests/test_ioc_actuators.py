"""The source's helicity-correlated actuators as PVs of the beam IOC (``BEAM:HC:*``).

A put inside the run's limit reaches the source (the readback, and the charge asymmetry of
the beam monitor in the published blocks); a put beyond it, or from a client not in
``MUPNC_CA_WRITERS``, is refused and changes nothing; ``mupnc ioc --list-pvs`` lists the
PVs; the setpoints survive an IOC restart through its autosave file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import uuid

import epics
import numpy as np
import pytest
from caproto import ErrorResponseReceived
from caproto.asyncio.server import Context
from support.chains import ioc_process
from support.cli import in_process
from support.waiting import wait_for

from mupnc.daq.blocks import WindowBlock
from mupnc.daq.record_fields import description
from mupnc.ioc.autosave import AutosaveError, RunSnapshot, load
from mupnc.ioc.records import WRITERS, PutRefusedError
from mupnc.ioc.server import build_ioc
from mupnc.sim.actuators import ActuatorsConfig
from mupnc.sim.source import SourceConfig, WindowSource

LIMITS = {"charge": 3000.0, "x": 20.0}
"""This module's run: the charge (ppm) and x (um) limits; y keeps its default (100 um)."""
DEFAULT_LIMITS = {"charge": 5000.0, "x": 100.0, "y": 100.0}
CONFIG = SourceConfig(
    window_rate=960.0,
    delay_patterns=0,  # the reported helicity is the actual one: the data show the asymmetry
    intensity_jitter=1e-3,
    seed=17,
    actuators=ActuatorsConfig({name: {"limit": limit} for name, limit in LIMITS.items()}),
)
SETPOINT_PVS = {"charge": "BEAM:HC:CHARGE_SP", "x": "BEAM:HC:X_SP", "y": "BEAM:HC:Y_SP"}
READBACK_PVS = {"charge": "BEAM:HC:CHARGE", "x": "BEAM:HC:X", "y": "BEAM:HC:Y"}


def new_snapshot(**kw) -> RunSnapshot:
    fields = dict(run=1, settings={}, first_seq=0, epoch=math.nan, next_seq=0)
    return RunSnapshot(**{**fields, **kw})


def charge_asymmetry(blocks: list[WindowBlock], after_seq: int = -1) -> tuple[float, int]:
    """The beam monitor's charge asymmetry ``sum(h * bcm) / sum(bcm)`` over the whole
    patterns after window ``after_seq`` (helicity as reported: delay 0), and its windows."""
    seq = np.concatenate([b.seq for b in blocks])
    seq, first = np.unique(seq, return_index=True)  # a block read twice counts once
    pattern = np.concatenate([b.pattern_number for b in blocks])[first]
    helicity = np.concatenate([b.reported_helicity for b in blocks])[first].astype(float)
    bcm = np.concatenate([b.beam_monitor for b in blocks])[first]
    numbers, counts = np.unique(pattern[seq > after_seq], return_counts=True)
    whole = np.isin(pattern, numbers[counts == 4]) & (seq > after_seq)
    return float(np.sum(helicity[whole] * bcm[whole]) / np.sum(bcm[whole])), int(whole.sum())


# -- the source and the IOC's PV database, no network ---------------------------------


def test_the_charge_setpoint_makes_the_beams_charge_asymmetry() -> None:
    """Pure: the same run with the charge actuator at 0 and at 2500 ppm (slope 1)."""
    measured = {}
    for setpoint in (0.0, 2500.0):
        source = WindowSource(CONFIG)
        source.actuators.set("charge", setpoint)
        simulated = source.next_block_of(9600)
        assert np.array_equal(simulated.actual_helicity, simulated.block.reported_helicity)
        measured[setpoint], windows = charge_asymmetry([simulated.block])
        assert windows == 9600
    # noise: jitter 1e-3 over 9600 windows ~ 10 ppm; the actuator's drift 2 %, noise 1 %
    assert abs(measured[0.0]) < 50e-6
    assert measured[2500.0] == pytest.approx(2500e-6, abs=150e-6)


def test_the_setpoints_accept_the_runs_limits_and_are_listed(capsys) -> None:
    """DRVL..DRVH = ± the run's limit (its configuration), from the moment the PVs exist;
    ``mupnc ioc --list-pvs`` gives type, units and meaning."""
    for config, limits in (
        (CONFIG, {**DEFAULT_LIMITS, **LIMITS}),
        (SourceConfig(), DEFAULT_LIMITS),
    ):
        pvdb = build_ioc("L:", config, 0).pvdb
        for name, suffix in SETPOINT_PVS.items():
            setpoint = pvdb["L:" + suffix]
            limit = limits[name]
            assert (setpoint.lower_ctrl_limit, setpoint.upper_ctrl_limit) == (-limit, limit)
            fields = setpoint.field_inst
            assert (fields.drive_low_limit.value, fields.drive_high_limit.value) == (-limit, limit)
            assert (
                not setpoint.pvspec.read_only and pvdb["L:" + READBACK_PVS[name]].pvspec.read_only
            )
    code, out, _ = in_process(capsys, "ioc", "--list-pvs", "--prefix", "L:")
    assert code == 0
    listed = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert listed["L:BEAM:HC:CHARGE_SP"] == [
        "DOUBLE (writable)",
        "ppm",
        "helicity-correlated intensity-asymmetry actuator: the setpoint (± the run's limit)",
    ]
    assert listed["L:BEAM:HC:X"] == [
        "DOUBLE",
        "um",
        "helicity-correlated position-difference actuator, x at the target: the setpoint "
        "the source applies",
    ]
    descriptions = set()
    for name in SETPOINT_PVS:
        units = "ppm" if name == "charge" else "um"
        assert listed["L:" + SETPOINT_PVS[name]][:2] == ["DOUBLE (writable)", units], name
        assert listed["L:" + READBACK_PVS[name]][:2] == ["DOUBLE", units], name
        descriptions |= {
            description(pvdb["L:" + pv].pvspec.doc)
            for pv in (SETPOINT_PVS[name], READBACK_PVS[name])
        }
    # a record's DESC is its doc's first line (at most 40 characters): each PV's own
    assert len(descriptions) == 6 and all(len(d) <= 40 for d in descriptions)


def test_autosave_keeps_the_setpoints_and_old_files_load_with_none(tmp_path) -> None:
    """An IOC's save holds its source's setpoints; a restarted IOC's source takes them
    over; a file written before the actuators existed continues with all 0; a saved
    setpoint beyond this run's limit is refused naming the file."""
    path = tmp_path / "mupnc.ioc.autosave"
    first = build_ioc("A:", CONFIG, 1, autosave=(path, new_snapshot()))
    first.source.actuators.set("charge", -1200.0)
    first.source.actuators.set("y", 42.5)
    first.save()
    saved = load(path)
    assert saved.actuators == {"charge": -1200.0, "x": 0.0, "y": 42.5}
    saved.incarnation += 1
    again = build_ioc("A:", CONFIG, 1, autosave=(path, saved))
    assert again.source.actuators.setpoints == {"charge": -1200.0, "x": 0.0, "y": 42.5}

    old = json.loads(path.read_text())
    del old["actuators"]
    path.write_text(json.dumps(old))
    assert load(path).actuators == {}
    older = load(path)
    older.incarnation += 1
    continued = build_ioc("A:", CONFIG, 1, autosave=(path, older))
    assert continued.source.actuators.setpoints == {"charge": 0.0, "x": 0.0, "y": 0.0}

    beyond = new_snapshot(incarnation=1, actuators={"x": 50.0})  # this run's x limit: 20 um
    with pytest.raises(AutosaveError, match=rf"autosave file {path}: x setpoint 50.0 um beyond"):
        build_ioc("A:", CONFIG, 1, autosave=(path, beyond))


def test_a_source_without_actuators_serves_the_pvs_and_refuses_puts() -> None:
    """A replay's source (:class:`mupnc.replay_source.RecordedSource`) has no actuators:
    the IOC still builds, with the configured limits, and refuses every setpoint."""
    source = WindowSource(CONFIG)
    del source.actuators
    beam = build_ioc("R:", CONFIG, 0, source=source).beam
    assert beam.hc_x_setpoint.upper_ctrl_limit == LIMITS["x"]
    with pytest.raises(PutRefusedError, match="a replay cannot set the source's actuators"):
        asyncio.run(beam.hc_charge_setpoint.write(10.0))
    assert beam.hc_charge_setpoint.value == 0.0 and beam.hc_charge.value == 0.0


# -- over Channel Access ----------------------------------------------------------------


class ServedIOC:
    """An IOC (:func:`build_ioc`) served by this test process, in a thread of its own, on
    the process's CA port (``MONITOR_PORT``): the test can look at its source."""

    def __init__(self, ioc) -> None:
        self.ioc = ioc
        self._loop = asyncio.new_event_loop()
        self._tasks: list[asyncio.Task] = []
        ready = threading.Event()

        async def main() -> None:
            self._tasks += [
                asyncio.create_task(Context(ioc.pvdb).run()),
                asyncio.create_task(ioc.run_simulation()),
            ]
            ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks)

        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(main(),), name="ioc", daemon=True
        )
        self._thread.start()
        assert ready.wait(10), "the IOC did not start"

    def close(self) -> None:
        for task in self._tasks:
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(10)


@pytest.fixture(scope="module")
def served(ca_env, tmp_path_factory):
    """(prefix, IOC, autosave file) of a run with :data:`CONFIG`, served over CA."""
    prefix = f"A{uuid.uuid4().hex[:8].upper()}:"
    path = tmp_path_factory.mktemp("actuators") / "mupnc.ioc.autosave"
    with pytest.MonkeyPatch.context() as env:
        for name, value in ca_env["monitor"].items():
            env.setenv(name, value)
        env.delenv(WRITERS, raising=False)
        ioc = ServedIOC(build_ioc(prefix, CONFIG, 1, autosave=(path, new_snapshot())))
        try:
            wait_for(lambda: epics.caget(prefix + "RUN:STATE", timeout=1) == 1, 30, "the run")
            yield prefix, ioc.ioc, path
        finally:
            ioc.close()


def collect_blocks(prefix: str, after_seq: int, windows: int) -> list[WindowBlock]:
    """Blocks published from now on, until they hold ``windows`` windows after ``after_seq``."""
    blocks: list[WindowBlock] = []
    pv = epics.PV(
        prefix + "DAQ:BLOCK",
        auto_monitor=True,
        callback=lambda value, **_: blocks.append(WindowBlock.unpack(np.asarray(value))),
    )
    try:
        wait_for(
            lambda: sum(int(np.sum(b.seq > after_seq)) for b in list(blocks)) >= windows,
            30,
            f"{windows} windows after window {after_seq}",
        )
    finally:
        pv.clear_callbacks()
        pv.disconnect()
    return list(blocks)


@pytest.mark.ca
def test_the_limits_are_served(served) -> None:
    prefix, _, _ = served
    for name in ("charge", "x"):
        pv = epics.PV(prefix + SETPOINT_PVS[name], form="ctrl", auto_monitor=False)
        ctrl = pv.get_ctrlvars(timeout=5)
        assert (ctrl["lower_ctrl_limit"], ctrl["upper_ctrl_limit"]) == (-LIMITS[name], LIMITS[name])
        assert ctrl["units"] == ("ppm" if name == "charge" else "um")
        drive = [
            epics.caget(f"{prefix}{SETPOINT_PVS[name]}.{f}", timeout=5) for f in ("DRVL", "DRVH")
        ]
        assert drive == [-LIMITS[name], LIMITS[name]], name
        pv.disconnect()


@pytest.mark.ca
def test_a_put_inside_the_limit_reaches_the_source_and_the_data(served) -> None:
    """BEAM:HC:CHARGE_SP = 2500 ppm: the readback and the source follow, the beam
    monitor's charge asymmetry in the published blocks goes from ~0 to ~2500 ppm, and the
    autosave file holds the setpoint."""
    prefix, ioc, path = served
    before = epics.caget(prefix + "DAQ:SEQ", timeout=5)
    asymmetry, _ = charge_asymmetry(collect_blocks(prefix, before, 2000), before)
    assert abs(asymmetry) < 100e-6, "the charge asymmetry before any setpoint"

    assert epics.caput(prefix + SETPOINT_PVS["charge"], 2500.0, wait=True, timeout=5)
    readback = prefix + READBACK_PVS["charge"]
    wait_for(lambda: epics.caget(readback, timeout=5) == 2500.0, 10, "the readback at 2500")
    assert ioc.source.actuators.setpoints["charge"] == 2500.0
    applied = epics.caget(prefix + "DAQ:SEQ", timeout=5)  # later windows have the setpoint
    asymmetry, windows = charge_asymmetry(collect_blocks(prefix, applied, 2000), applied)
    assert windows >= 1900
    assert asymmetry == pytest.approx(2500e-6, abs=200e-6)
    wait_for(
        lambda: (saved := load(path)) is not None and saved.actuators.get("charge") == 2500.0,
        10,
        "the setpoint in the autosave file",
    )


@pytest.mark.ca
@pytest.mark.parametrize(("name", "bad"), [("charge", 3500.0), ("charge", -3000.5), ("x", 25.0)])
def test_a_put_beyond_the_runs_limit_is_refused(served, name, bad) -> None:
    """ECA_PUTFAIL to the client; setpoint, readback and source keep their values."""
    from caproto.sync.client import write

    prefix, ioc, _ = served
    setpoint, readback = prefix + SETPOINT_PVS[name], prefix + READBACK_PVS[name]
    kept = ioc.source.actuators.setpoints[name]
    with pytest.raises(ErrorResponseReceived, match="ECA_PUTFAIL"):
        write(setpoint, [bad], notify=True, repeater=False, timeout=5)
    epics.caput(setpoint, bad, wait=True, timeout=5)  # the EPICS client too
    assert epics.caget(setpoint, timeout=5, use_monitor=False) == kept
    assert epics.caget(setpoint + ".SEVR", timeout=5) == 0
    assert epics.caget(readback, timeout=5, use_monitor=False) == kept
    assert ioc.source.actuators.setpoints[name] == kept


@pytest.mark.ca
def test_a_client_not_among_the_writers_cannot_set_an_actuator(served, monkeypatch) -> None:
    """With MUPNC_CA_WRITERS naming someone else, BEAM:HC:Y_SP (a channel this process
    connects here first) is read-only to this client, and a client that writes anyway is
    refused by the IOC."""
    from caproto.threading.client import Context as ClientContext

    prefix, ioc, _ = served
    monkeypatch.setenv(WRITERS, "operator@control-room")  # the IOC is this process
    setpoint = epics.PV(prefix + SETPOINT_PVS["y"])
    assert setpoint.wait_for_connection(timeout=5)
    assert setpoint.read_access and not setpoint.write_access
    with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
        setpoint.put(10.0, wait=True, timeout=5)
    context = ClientContext()
    (rogue,) = context.get_pvs(prefix + SETPOINT_PVS["y"])
    rogue.wait_for_connection(timeout=5)
    rogue.write([10.0], wait=False)
    assert rogue.read(timeout=5).data[0] == 0.0
    context.disconnect()
    assert ioc.source.actuators.setpoints["y"] == 0.0
    assert epics.caget(prefix + READBACK_PVS["y"], timeout=5) == 0.0
    setpoint.disconnect()


@pytest.mark.ca
def test_a_restarted_ioc_keeps_the_setpoints(tmp_path, ca_env, ioc_prefix) -> None:
    """``mupnc ioc --autosave``: set, stop (SIGTERM), start again (served under another
    prefix, so no cached channel answers for it): the setpoints and readbacks show the
    values set before."""
    path, db = tmp_path / "mupnc.ioc.autosave", f"sqlite:///{tmp_path / 'x.db'}"
    first, second = ioc_prefix, ioc_prefix[:-1] + "R:"
    wanted = {"charge": -750.0, "x": 12.5, "y": 0.0}
    args = ("--autosave", str(path), "--block-rate", "5")
    with ioc_process(first, ca_env["ioc"], tmp_path / "first.log", db, *args):
        for name in ("charge", "x"):
            assert epics.caput(first + SETPOINT_PVS[name], wanted[name], wait=True, timeout=5)
    assert load(path).actuators == wanted
    log = tmp_path / "second.log"
    with ioc_process(second, ca_env["ioc"], log, db, *args):
        for name, value in wanted.items():
            assert epics.caget(second + SETPOINT_PVS[name], timeout=5) == value, name
            assert epics.caget(second + READBACK_PVS[name], timeout=5) == value, name
        assert "continuing run 1" in log.read_text()
    assert load(path).actuators == wanted
