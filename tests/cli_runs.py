"""Running the real ``mupnc`` console script for the bad-input tests: many runs at once
(each start costs ~0.5 s of CPU), and the one-line error check they share."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MUPNC = str(Path(sys.executable).with_name("mupnc"))


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MUPNC, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def run_all(jobs: dict, cwd: Path) -> dict:
    """``{key: (args, env)}`` -> ``{key: CompletedProcess}``, four runs at a time."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run, args, cwd, env) for key, (args, env) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def one_error_line(result: subprocess.CompletedProcess, status: int) -> str:
    """The single stderr line of a run that failed with ``status`` (and no traceback)."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mupnc: error: "), lines[0]
    return lines[0]


def named_line(message: str) -> int | None:
    """The file line an error message names (``FILE, line N: ...``), if any."""
    found = re.search(r", line (\d+):", message)
    return None if found is None else int(found.group(1))
