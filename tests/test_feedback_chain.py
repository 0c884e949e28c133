"""Feedback over real Channel Access: the monitor drives the IOC's charge actuator.

A 1000 ppm charge asymmetry, an actuator that responds with 0.8 of the loop's calibrated
slope: the monitor's charge loop (decisions every 300 good patterns) writes
``BEAM:HC:CHARGE_SP`` until the charge asymmetry is zero within its errors; ``mupnc
feedback charge dry-run`` then switches it at run time, and the setpoint stays.
"""

from __future__ import annotations

import os
import subprocess
import sys

import epics
import pytest
from sqlalchemy import select
from support.chains import chain_of
from support.waiting import wait_for

from mupnc.commands import report
from mupnc.db.models import FeedbackAction
from mupnc.db.session import make_engine, transaction
from mupnc.run_file import load_feedback, load_run_file
from mupnc.runs import new_run
from mupnc.sim.source import SourceConfig

pytestmark = pytest.mark.ca

CONFIG = """\
[beam]
rate = 1e8
charge_asymmetry = 1e-3
intensity_jitter = 1e-4

[actuators.charge]
slope = 0.8

[feedback.charge]
enabled = true
patterns = 300
clamp = 3000.0
"""


def decisions(db: str, run: int) -> list[FeedbackAction]:
    with transaction(make_engine(db)) as session:
        rows = session.scalars(
            select(FeedbackAction).where(FeedbackAction.run == run).order_by(FeedbackAction.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_the_monitor_drives_the_charge_asymmetry_to_zero_and_switches_at_run_time(
    tmp_path, ca_env, ioc_prefix
):
    path = tmp_path / "feedback.toml"
    path.write_text(CONFIG)
    config = SourceConfig(**load_run_file(path))
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    run = new_run(db, config, feedback=load_feedback(path, config.resolved_channel_map()))
    ioc = ["ioc", "--run", str(run), "--prefix", ioc_prefix, "--config", str(path)]
    with chain_of(db, ca_env, ioc, ["monitor", "--prefix", ioc_prefix]) as chain:
        # converged: the input of the latest decision within 3 sigma of zero, 4 actions on
        def converged() -> bool:
            acted = [d for d in decisions(db, run) if d.acted]
            last = acted[-1] if acted else None
            return len(acted) >= 4 and abs(last.value) < 3 * last.error

        wait_for(converged, 180, "the charge loop to converge")
        assert chain.failed() is None
        rows = decisions(db, run)
        assert rows[0].value == pytest.approx(1000, rel=0.05)  # ppm, the first window
        assert all(abs(r.after) <= 3000 for r in rows) and not any(r.dry_run for r in rows)
        readback = epics.caget(ioc_prefix + "BEAM:HC:CHARGE", timeout=5)
        assert readback == pytest.approx(-1000 / 0.8, rel=0.05)
        assert readback == pytest.approx(rows[-1].after)
        wait_for(
            lambda: epics.caget(ioc_prefix + "MON:FB:CHARGE:ACTIONS", timeout=2) >= 4,
            30,
            "MON:FB:CHARGE:ACTIONS",
        )

        # switched to a dry run at run time: decisions go on, the setpoint stays
        switched = subprocess.run(
            [
                sys.executable,
                "-m",
                "mupnc",
                "feedback",
                "charge",
                "dry-run",
                "--prefix",
                ioc_prefix,
            ],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert switched.returncode == 0, switched.stderr
        assert epics.caget(ioc_prefix + "MON:FB:CHARGE:MODE", as_string=True) == "DRY_RUN"
        before = len(decisions(db, run))
        wait_for(lambda: len(decisions(db, run)) >= before + 2, 60, "two dry-run decisions")
        dry = decisions(db, run)[before:]
        assert all(d.dry_run and d.before == rows[-1].after for d in dry)
        assert epics.caget(ioc_prefix + "BEAM:HC:CHARGE", timeout=5) == readback
        assert chain.end_run(), "the monitor did not finish the run cleanly"

    summary = report(db, run)["feedback"]["charge"]
    assert summary["mode"] == "dry_run" and summary["actions"] >= 4  # as switched
    assert summary["last_setpoint"] == pytest.approx(readback)
