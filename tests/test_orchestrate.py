"""Orchestration: the chain's child processes never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.waiting import wait_for

pytestmark = pytest.mark.ca


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_children_stop_when_the_demo_is_killed(tmp_path):
    db = f"sqlite:///{tmp_path / 'd.db'}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "mupnc", "--db", db, "demo", "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    children: list[int] = []
    try:
        assert demo.stdout.readline().startswith("run ")
        wait_for(lambda: len(children_of(demo.pid)) >= 2, 30, "the IOC and monitor", step=0.2)
        children = children_of(demo.pid)
        assert len(children) == 2, "IOC and monitor should be running"
        demo.send_signal(signal.SIGKILL)  # no clean-up in the parent at all
        demo.wait()
        wait_for(
            lambda: not any(alive(c) for c in children),
            30,
            "the children to stop (a child outlived the demo)",
            step=0.2,
        )
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in filter(alive, children):  # never leave a stray IOC behind
            os.kill(pid, signal.SIGKILL)
