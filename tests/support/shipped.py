"""Code mupnc shipped before, loaded from git: what a format change must stay readable by
(and what must refuse the new format cleanly)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shipped_module(commit: str, path: str, folder: Path, monkeypatch) -> ModuleType:
    """The module ``path`` (e.g. ``daq/blocks.py``) as it was at ``commit``, imported under
    a name of its own; skips the test outside a git clone with mupnc's history."""
    old = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"], capture_output=True, text=True
    )
    if old.returncode != 0:
        pytest.skip(f"not a git clone with mupnc's history: {old.stderr.strip()}")
    name = f"shipped_{Path(path).stem}_{commit}"
    (folder / f"{name}.py").write_text(old.stdout)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module
