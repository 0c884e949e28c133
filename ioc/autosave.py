"""Autosave of a running IOC, so a restarted IOC continues the run (EPICS autosave's job).

``mupnc ioc --autosave FILE`` keeps in FILE (JSON, replaced atomically about once a second
and when the IOC stops) what a new IOC process needs to carry on with the same run:

* the run number and its first window;
* ``epoch``: the wall-clock time (s since 1970, UTC) of window ``seq`` 0.  The helicity
  source does not stop when the DAQ's IOC does, so a restarted IOC resumes at the window
  the clock has reached; the windows of its down time were never published and the monitor
  counts them as missed (``missed_windows``, an alarm);
* the helicity-gated scalers (counts by helicity +1/-1, per channel) and the last window
  they include;
* the operator's settings: muon-rate setpoint, beam switch, faults switched on, the
  setpoints of the source's helicity-correlated actuators (a file written before they
  existed has none: all 0);
* the run settings (:func:`mupnc.commands.run_config`): a restart with other settings is
  refused rather than mixed into the run.

A process killed with SIGKILL leaves the file of up to a second before: its scalers then
lack the last blocks it published, while the monitor may have them.  SIGTERM saves first.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SAVE_PERIOD = 1.0
"""Seconds between two saves while the run goes on."""


class AutosaveError(ValueError):
    """An autosave file that cannot be used; the message names the file."""


@dataclass
class RunSnapshot:
    run: int
    settings: dict
    """The run settings (:func:`mupnc.commands.run_config`)."""
    first_seq: int
    epoch: float
    """Wall-clock time of window seq 0 (s since 1970)."""
    next_seq: int
    """First window not published yet."""
    incarnation: int = 0
    """How many times the IOC was restarted into this run."""
    scaler_plus: list[float] = field(default_factory=list)
    scaler_minus: list[float] = field(default_factory=list)
    muon_rate: float | None = None
    beam_on: bool = True
    faults: dict[str, dict[str, float]] = field(default_factory=dict)
    actuators: dict[str, float] = field(default_factory=dict)
    """Setpoints of the helicity-correlated actuators by name (:mod:`mupnc.sim.actuators`;
    ppm, um); one not saved is 0."""
    ended: bool = False

    def resume_seq(self, now: float, window_rate: float, pattern_size: int) -> int:
        """The window a restart at wall-clock ``now`` continues with: where the clock is,
        rounded up to a pattern start, never before :attr:`next_seq`."""
        reached = self.next_seq
        if math.isfinite(self.epoch):  # else the clock never started
            reached = max(reached, math.ceil((now - self.epoch) * window_rate))
        return -(-reached // pattern_size) * pattern_size

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a crash) never sees half a file."""
        temporary = path.with_name(path.name + ".tmp")
        try:
            with open(temporary, "w") as out:
                json.dump(asdict(self), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as err:
            raise AutosaveError(f"autosave file {path}: {err.strerror}") from None


def load(path: Path) -> RunSnapshot | None:
    """The snapshot in ``path``; None if there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise AutosaveError(f"autosave file {path}: {err.strerror}") from None
    try:
        return RunSnapshot(**json.loads(text))
    except json.JSONDecodeError as err:
        raise AutosaveError(
            f"autosave file {path}, line {err.lineno}: not JSON ({err.msg}); "
            "remove it to start a new run"
        ) from None
    except TypeError as err:
        raise AutosaveError(
            f"autosave file {path}: not a mupnc IOC autosave ({err}); remove it to start a new run"
        ) from None


def settings_conflict(saved: dict, current: dict) -> str | None:
    """What differs between the saved run's settings and this IOC's, if anything."""
    keys = sorted(set(saved) | set(current))
    changed = [k for k in keys if saved.get(k) != current.get(k)]
    if not changed:
        return None
    k = changed[0]
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    return f"{k} was {saved.get(k)!r}, now {current.get(k)!r}{more}"
