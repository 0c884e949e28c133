"""The monitor's result PVs over real Channel Access: an undefined result is NaN with
INVALID severity and UDF status, never a number (``MON:CHI2_NDF`` used to read 0.0 for
the first minutes of every run)."""

from __future__ import annotations

import math
import uuid

import epics
import pytest
from caproto import AlarmSeverity, AlarmStatus
from p4p.client.thread import Context
from support.waiting import wait_for

from mupnc.epics_env import free_port, pva_environment
from mupnc.monitor.publisher import ResultPublisher, beam_values

pytestmark = pytest.mark.ca


PVA_PORT = free_port()
PVA_CLIENT = {"EPICS_PVA_ADDR_LIST": f"127.0.0.1:{PVA_PORT}", "EPICS_PVA_AUTO_ADDR_LIST": "NO"}


@pytest.fixture
def publisher(monkeypatch, ca_env):
    """A result publisher served by this process on its own CA port (``MONITOR_PORT``),
    with its pvAccess mirror on ``PVA_PORT`` (from the environment, as a demo's monitor
    has it)."""
    for name, value in {**ca_env["monitor"], **pva_environment(PVA_PORT, [])}.items():
        monkeypatch.setenv(name, value)
    prefix = f"P{uuid.uuid4().hex[:8].upper()}:"
    served = ResultPublisher(prefix, pva=True)
    yield prefix, served
    served.close()


def read(name: str) -> dict:
    data = epics.PV(name, form="time").get_with_metadata(timeout=10, as_string=False)
    assert data is not None, f"{name} did not answer"
    return data


def test_undefined_results_are_nan_and_invalid(publisher) -> None:
    """Before the first result, then with a defined asymmetry and an undefined chi2/ndf
    (one publisher per test process: its CA port is the process's own)."""
    prefix, served = publisher
    assert math.isnan(read(f"{prefix}MON:ASYM")["value"])  # nothing published yet
    served.publish(asym=1.5e-3, asym_err=2e-4, chi2_ndf=math.nan, estimator="counting")
    chi2 = read(f"{prefix}MON:CHI2_NDF")
    assert math.isnan(chi2["value"])
    assert (chi2["severity"], chi2["status"]) == (AlarmSeverity.INVALID_ALARM, AlarmStatus.UDF)
    asym = read(f"{prefix}MON:ASYM")
    assert asym["value"] == 1.5e-3
    assert (asym["severity"], asym["status"]) == (AlarmSeverity.NO_ALARM, AlarmStatus.NO_ALARM)
    assert epics.caget(f"{prefix}MON:ESTIMATOR", as_string=True, timeout=10) == "COUNTING"
    same_over_pvaccess(prefix, served)
    served.publish(chi2_ndf=1.02)
    chi2 = read(f"{prefix}MON:CHI2_NDF")
    assert chi2["value"] == 1.02 and chi2["severity"] == AlarmSeverity.NO_ALARM
    # the decoder's lock and the windows it holds
    assert epics.caget(f"{prefix}MON:DECODER", as_string=True, timeout=10) == "LEARNING"
    served.publish(decoder="UNLOCKED", windows_held=1234)
    wait_for(  # a client may still hold the previous value for a moment
        lambda: epics.caget(f"{prefix}MON:DECODER", as_string=True, timeout=10) == "UNLOCKED",
        10,
        "MON:DECODER = UNLOCKED",
    )
    assert epics.caget(f"{prefix}MON:WINDOWS_HELD", timeout=10) == 1234

    # the beam: differences in the unit a shift reads, the regressed asymmetry, the slopes
    result = steered_result()
    names = ["scat_0", "scat_1"]
    served.publish(**beam_values(result, names))
    x = read(f"{prefix}MON:BEAM:X:DIFF")
    assert abs(x["value"] - 1e6 * result.beam["x"].value) < 1e-6
    assert units(f"{prefix}MON:BEAM:X:DIFF") == "nm"
    assert units(f"{prefix}MON:BEAM:DPP:DIFF") == "ppb"
    regressed = read(f"{prefix}MON:ASYM:REG")
    assert regressed["value"] == result.regressed.value
    assert regressed["severity"] == AlarmSeverity.NO_ALARM
    shift = (result.combined.value - result.regressed.value) / result.combined.error
    assert read(f"{prefix}MON:ASYM:REG:SHIFT")["value"] == pytest.approx(shift)
    slopes = epics.caget(f"{prefix}MON:BEAM:X:SLOPES", timeout=10)
    assert len(slopes) == 3 and slopes[-1] == pytest.approx(result.slopes[("combined", "x")].value)
    channels = epics.caget(f"{prefix}MON:BEAM:SLOPE_CHANNELS", as_string=True, timeout=10)
    assert channels == "scat_0,scat_1,combined"

    # beam modulation: the dithered asymmetry, the cycles, the patterns cut
    modulated = steered_result(stuck=())
    assert len(modulated.dither_cycles) >= 3 and math.isfinite(modulated.dithered.value)
    served.publish(**beam_values(modulated, names))
    assert read(f"{prefix}MON:ASYM:DIT")["value"] == modulated.dithered.value
    assert read(f"{prefix}MON:ASYM:DIT:ERR")["value"] == modulated.dithered.error
    assert epics.caget(f"{prefix}MON:DIT:CYCLES", timeout=10) == len(modulated.dither_cycles)
    cut = epics.caget(f"{prefix}MON:DIT:PATTERNS_CUT", timeout=10)
    assert cut == modulated.patterns_modulation > 0
    # a stuck coil leaves four coils for five variables: named, and no dithered number
    stuck = steered_result(stuck=("coil_3",))
    served.publish(**beam_values(stuck, names))
    wait_for(
        lambda: epics.caget(f"{prefix}MON:DIT:DEAD_COILS", as_string=True, timeout=10) == "coil_3",
        10,
        "MON:DIT:DEAD_COILS = coil_3",
    )
    undefined = read(f"{prefix}MON:ASYM:DIT")
    assert math.isnan(undefined["value"]) and undefined["status"] == AlarmStatus.UDF


def same_over_pvaccess(prefix: str, served: ResultPublisher) -> None:
    """Over pvAccess (p4p's client) the same names give the same value, severity and
    timestamp as over CA, with the display metadata (one publisher per test process, so
    this runs inside the test above)."""
    with Context("pva", conf=PVA_CLIENT, useenv=False) as client:
        for name in ("MON:ASYM", "MON:ASYM:ERR", "MON:CHI2_NDF", "MON:WINDOWS"):
            over_ca, over_pva = read(prefix + name), client.get(prefix + name, timeout=10)
            assert over_pva.severity == over_ca["severity"], name
            assert math.isnan(over_ca["value"]) == math.isnan(over_pva), name
            if not math.isnan(over_ca["value"]):
                assert float(over_pva) == over_ca["value"], name
            assert abs(over_pva.timestamp - over_ca["timestamp"]) < 2e-6, name
        chi2 = client.get(f"{prefix}MON:CHI2_NDF", timeout=10)
        assert (chi2.severity, chi2.raw.alarm.message) == (3, "UDF")
        assert client.get(f"{prefix}MON:ASYM", timeout=10).raw.display.precision == 8
        decoder = client.get(f"{prefix}MON:DECODER", timeout=10).raw.value
        assert decoder.choices[decoder.index] == "LEARNING"
        served.publish(lost_windows=7)
        wait_for(
            lambda: client.get(f"{prefix}MON:LOST_WINDOWS", timeout=10) == 7,
            10,
            "MON:LOST_WINDOWS = 7 over pvAccess",
        )


def test_no_pva_serves_nothing_over_pvaccess(monkeypatch, ca_env) -> None:
    """``--no-pva``: the CA server only (nothing read over CA here: one CA publisher per
    test process is read)."""
    for name, value in {**ca_env["monitor"], **pva_environment(PVA_PORT, [])}.items():
        monkeypatch.setenv(name, value)
    served = ResultPublisher("NOPVA:", pva=False)
    try:
        served.publish(asym=1.5e-3)
        assert served.pva is None
        with (
            Context("pva", conf=PVA_CLIENT, useenv=False) as client,
            pytest.raises(TimeoutError),
        ):
            client.get("NOPVA:MON:ASYM", timeout=3)
    finally:
        served.close()


def units(name: str) -> str:
    data = epics.PV(name, form="ctrl").get_with_metadata(timeout=10)
    assert data is not None, f"{name} did not answer"
    return data["units"]


def steered_result(stuck: tuple[str, ...] | None = None):
    """A short simulated run whose beam is steered 20 um by the spin state; with ``stuck``
    beam modulation too (cycles every 4 s of five 0.5 s coils, those coils stuck)."""
    from mupnc.monitor.analysis.run_analysis import RunAnalysis
    from mupnc.monitor.analysis.settings import RunSettings
    from mupnc.sim.beamline import BeamlineConfig
    from mupnc.sim.modulation import ModulationConfig
    from mupnc.sim.source import ChannelMap, SourceConfig, WindowSource

    shipped = SourceConfig().resolved_channel_map()
    two = ChannelMap("alr", (*shipped.channels[:2], *shipped.channels[8:]))
    beam = BeamlineConfig({"x": {"hc_difference": 0.02}}, {"default": {"x": 0.1}})
    modulation = ModulationConfig(
        enabled=stuck is not None, period=4.0, coil_time=0.5, stuck=stuck or ()
    )
    config = SourceConfig(
        channel_map=two, beamline=beam, muon_rate=1e10, seed=2, modulation=modulation
    )
    source = WindowSource(config)
    settings = RunSettings(1, "quartet", 2, config.polarization, two)
    analysis = RunAnalysis(settings)
    analysis.feed(source.next_block_of(4000).block)
    analysis.finish()
    return analysis.result()


def test_a_dashboard_follower_takes_the_newest_result_or_says_it_finds_no_monitor(
    publisher, caplog
) -> None:
    """The dashboard's follower of ``MON:RUN/ASYM/ASYM:ERR`` gets the published result and
    stays quiet; one on a prefix nobody serves warns once, naming the PVs, that the page
    shows the database's points only (a dashboard without the monitor's CA address).

    Published again until followed, as a monitor does four times a second: the three
    subscriptions' first values arrive in any order, and an error before its asymmetry
    completes no pair (once, in CI, the only publish went that way)."""
    from mupnc.dashboards.live_results import ResultFollower

    prefix, served = publisher
    followed, orphan = ResultFollower(prefix, warn_after=5), ResultFollower("NOBODY:", 0.5)
    try:
        wait_for(lambda: all(pv.connected for pv in followed._pvs), 30, "the result PVs")

        def followed_after_publishing() -> bool:
            served.publish(run=3, asym=2.5e-3, asym_err=1e-4)
            return followed.newest is not None

        wait_for(followed_after_publishing, 30, "the newest result")
        assert (followed.newest.run, followed.newest.value) == (3, 2.5e-3)
        for follower in (orphan, followed):  # each one's check has run
            follower._check.join(timeout=30)
            assert not follower._check.is_alive()
    finally:
        followed.close()
        orphan.close()
    warnings = [r.getMessage() for r in caplog.records if "not found" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "NOBODY:MON:RUN, NOBODY:MON:ASYM, NOBODY:MON:ASYM:ERR" in warnings[0]
