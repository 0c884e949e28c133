"""Helpers the benchmark scripts share; importing this module changes no CA environment.

It puts ``tests/`` on the import path: the benches share the test-support package
(``tests/support``: the throw-away PostgreSQL server), which the product does not install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def write_channel_map(folder: Path, n_channels: int, acceptance: float = 1e-5) -> Path:
    """An A_LR channel map of ``n_channels`` scatter channels spread evenly in cos(theta),
    each with ``acceptance`` (fraction of the muon rate it counts)."""
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
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (s), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
