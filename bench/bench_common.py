"""Helpers the benchmark scripts share; importing this module changes no CA environment.

It puts ``tests/`` on the import path: the benches share the test-support package
(``tests/support``: the throw-away PostgreSQL server), which the product does not install.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def write_channel_map(
    folder: Path, n_channels: int, acceptance: float = 1e-5, beam_monitors: bool = False
) -> Path:
    """An A_LR channel map of ``n_channels`` scatter channels spread evenly in cos(theta),
    each with ``acceptance`` (fraction of the muon rate it counts); with ``beam_monitors``
    also the five beam position monitors of the shipped maps (the regression's input)."""
    path = folder / f"alr_{n_channels}.toml"
    lines = ['mode = "alr"']
    for i in range(n_channels):
        cos_theta = -1 + (2 * i + 1) / n_channels
        lines += [
            "[[channels]]",
            f'name = "det_{i:03d}"',
            'role = "scatter"',
            f"cos_theta = {cos_theta:.6f}",
            f"acceptance = {acceptance:g}",
        ]
    text = "\n".join(lines) + "\n"
    if beam_monitors:
        shipped = resources.files("mupnc.daq").joinpath("channel_maps/alr.toml").read_text()
        text += shipped[shipped.index("# Beam position monitors") :]
    path.write_text(text)
    return path


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (s), from /proc/PID/stat."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time of process ``pid``'s threads so far (s), by kind: ``main`` (the main
    thread), ``python threads`` (the others of the interpreter: they carry its name) and
    each named C thread (libca's ``CAC-TCP-recv``, ...); threads that ended are not in it."""
    tasks = Path(f"/proc/{pid}/task")
    name = (tasks / str(pid) / "comm").read_text().strip()
    out: dict[str, float] = {}
    for task in tasks.iterdir():
        try:
            comm, cpu = (task / "comm").read_text().strip(), _stat_cpu(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        kind = "main" if task.name == str(pid) else "python threads" if comm == name else comm
        out[kind] = out.get(kind, 0.0) + cpu
    return out
