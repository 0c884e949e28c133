"""Over real Channel Access: a blinded live run, replayed through the IOCs at 4x and at max
speed, gives the same report to the last bit; re-analysis of its recording too.

Both replays coalesce the recorded 20 Hz blocks into bigger published blocks (the replay's
own recording, as the monitor ingested it, has fewer blocks): the analysis does not depend
on how the windows are cut into blocks.  The 4x replay is timed from the IOC's own
timestamps of ``DAQ:SEQ`` (server side, so a loaded test process does not bias them); its
scalers, gated by the helicity the IOC decodes from the recording, equal the replay's
helicity-sorted database totals exactly.
"""

from __future__ import annotations

import json
import uuid

import epics
import numpy as np
import pytest
from db_writes import sorted_totals
from sqlalchemy import func, select
from support.chains import analysis, chain_of, ioc_scalers
from support.cli import mupnc, mupnc_replay
from support.waiting import wait_for

from mupnc.commands import report
from mupnc.daq.channel_map import default_channel_map
from mupnc.db.models import RecordedBlock
from mupnc.db.recording_reader import WHOLE_RUN, SeqRange
from mupnc.db.recording_reader import recorded_blocks as recording
from mupnc.db.session import make_engine, transaction
from mupnc.offline import reanalyze
from mupnc.replay import allocate_replay
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

SECONDS = 10
SPEED = 4.0
MINIRUN = 100
SEED = {"MUPNC_BLINDING_SEED": "replay-test-seed"}


def recorded_blocks(db: str, run: int) -> int:
    with transaction(make_engine(db)) as session:
        return session.scalar(
            select(func.count()).select_from(RecordedBlock).where(RecordedBlock.run == run)
        )


@pytest.fixture(scope="module")
def live(tmp_path_factory, ca_env) -> tuple[str, int]:
    """A blinded live run of SECONDS s of data (IOC + monitor), ended cleanly."""
    # module-scoped: its own prefix, not the per-test fixture
    prefix = ["--prefix", f"TLIVE{uuid.uuid4().hex[:6].upper()}:"]
    db = f"sqlite:///{tmp_path_factory.mktemp('replay') / 'replay.db'}"
    config = SourceConfig(asymmetry=0.01, muon_rate=1e9, seed=11)
    run = new_run(db, config, blinded=True, blind_box=0.02)
    sim = ["--asymmetry", "0.01", "--rate", "1e9", "--seed", "11", "--blind", "0.02"]
    ioc = ["ioc", "--run", str(run), *prefix, *sim]
    monitor = ["monitor", "--minirun", str(MINIRUN), *prefix]
    with chain_of(db, ca_env, ioc, monitor, monitor_env=SEED) as chain:
        # SECONDS of data, however long a loaded machine takes to start the IOC
        wait_for(
            lambda: (epics.caget(prefix[1] + "DAQ:SEQ", timeout=1) or 0) >= SECONDS * 240,
            120,
            f"{SECONDS} s of windows",
        )
        assert chain.failed() is None
        assert chain.end_run(), "the monitor did not finish the live run cleanly"
    return db, run


def test_replay_at_4x_is_paced_and_gives_the_same_report(live, ca_env, ioc_prefix):
    db, run = live
    engine = make_engine(db)
    replay = allocate_replay(engine, run, WHOLE_RUN, SPEED, (None, None))
    updates: list[tuple[float, int]] = []
    ioc = ["ioc", "--run", str(replay), "--source", f"replay:{run}", "--speed", str(SPEED)]
    ioc += ["--prefix", ioc_prefix]
    with chain_of(db, ca_env, ioc) as chain:
        # Subscribe once the IOC serves (it holds block 1 on until the monitor is ready).
        assert epics.caget(ioc_prefix + "DAQ:RING_DEPTH", timeout=60) is not None
        seq_pv = epics.PV(ioc_prefix + "DAQ:SEQ", auto_monitor=True, form="time")
        seq_pv.add_callback(
            lambda value=None, timestamp=None, **_: updates.append((timestamp, value))
        )
        assert seq_pv.wait_for_connection(timeout=10)
        monitor = ["monitor", "--minirun", str(MINIRUN), "--prefix", ioc_prefix]
        chain.start("monitor", monitor, {**ca_env["monitor"], **SEED})
        assert chain.wait("monitor", 120) == 0, "the monitor did not finish the replay"
        scalers = ioc_scalers(ioc_prefix)
        last_seq = epics.caget(ioc_prefix + "DAQ:SEQ", timeout=10)
        seq_pv.clear_callbacks()

    original, replayed = report(db, run), report(db, replay)
    assert replayed["source"] == "replay" and replayed["replay_of"] == run
    assert replayed["blinded"] and replayed["blinding_checksum"] == original["blinding_checksum"]
    assert original["miniruns"] > 3 and original["lost_windows"] == 0
    assert analysis(replayed) == analysis(original)

    # published blocks of 2 recorded ones (4x: 40 blocks/s <= PUBLISH_RATE)
    assert recorded_blocks(db, replay) < 0.6 * recorded_blocks(db, run)

    names = [c["name"] for c in replayed["channels"]]
    np.testing.assert_array_equal(sorted_totals(engine, replay, names), scalers)

    # Pace: block 0 goes out at once, the rest once the monitor is ready; time the rest.
    # The replay keeps an absolute schedule, so a block the busy machine delays is followed
    # by a quicker one: the pace is the slope of a straight line through every update (the
    # IOC's timestamps), not the interval between two of them.
    paced = np.array([(t, s) for t, s in updates if s is not None and s >= 0][1:], dtype=float)
    assert paced[-1, 1] == last_seq == original["windows"] - 1
    data_seconds = (paced[:, 1] - paced[0, 1]) / 240.0
    assert data_seconds[-1] >= 8 and len(paced) > 50
    seconds_per_data_second = np.polyfit(data_seconds, paced[:, 0], 1)[0]
    speed = 1.0 / seconds_per_data_second
    assert abs(speed / SPEED - 1) < 0.05, f"replay ran at {speed:.3f}x, not {SPEED}x"
    engine.dispose()


def test_mupnc_replay_at_max_speed_and_reanalysis_give_the_same_report(live, monkeypatch):
    db, run = live
    replay, stdout = mupnc_replay(db, run, "--speed", "max", env=SEED)
    assert f"run {replay} (replay of run {run})" in stdout
    original = report(db, run)
    assert analysis(report(db, replay)) == analysis(original)
    assert recorded_blocks(db, replay) * 10 < recorded_blocks(db, run)  # ~1 s blocks, not 20 Hz

    monkeypatch.setenv("MUPNC_BLINDING_SEED", SEED["MUPNC_BLINDING_SEED"])
    again = reanalyze(db, run, None, unblind=False)
    assert analysis(again) == analysis(original)
    assert again["reanalysis"]["minirun_patterns"] == MINIRUN
    assert not again["reanalysis"]["unblinded"]

    unblinded = reanalyze(db, run, None, unblind=True)
    assert not unblinded["blinded"] and unblinded["blinding_checksum"] is None
    assert unblinded["asymmetry"]["error"] == original["asymmetry"]["error"]
    assert unblinded["asymmetry"]["value"] != original["asymmetry"]["value"]
    injected = 0.01
    a = unblinded["asymmetry"]
    assert abs(a["value"] - injected) < 3 * a["error"], a


def test_mupnc_replay_of_a_time_range_publishes_exactly_its_windows(live):
    """``--from 2 --to 7``: the 20 Hz blocks wholly inside seconds 2..7 of data (windows
    480..1679 at 240 Hz), nothing counted lost, listed by ``runs --json`` as a replay."""
    db, run = live
    replay, _ = mupnc_replay(db, run, "--from", "2", "--to", "7", "--speed", "max", env=SEED)
    summary = report(db, replay)
    assert summary["windows"] == 1200 and summary["lost_windows"] == 0
    assert all(count == 0 for count in summary["helicity_errors"].values())
    assert summary["patterns_good"] > 0.8 * 1200 / 4

    engine = make_engine(db)
    detectors = default_channel_map(summary["mode"]).detector_columns  # not the beam monitors
    expected = sum(
        b.counts[:, detectors].sum(axis=0)
        for batch in recording(engine, run, SeqRange(480, 1680))
        for b in batch
    )
    names = [c["name"] for c in summary["channels"]]
    np.testing.assert_array_equal(sorted_totals(engine, replay, names).sum(axis=0), expected)
    engine.dispose()

    listed = mupnc("runs", "--json", db=db)
    assert listed.returncode == 0, listed.stderr
    runs = {r["run"]: r for r in json.loads(listed.stdout)}
    assert (runs[replay]["source"], runs[replay]["replay_of"]) == ("replay", run)
    assert (runs[run]["source"], runs[run]["replay_of"]) == ("live", None)
