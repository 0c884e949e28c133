"""Event cuts between decoding and accumulation (pure numpy; no I/O).

**Low beam** (JAPAN's ``Low_beam``, a lower limit on the beam current monitor): a pattern
is cut when any of its windows saw a beam rate below ``min_rate``.  A window's beam rate
is its beam-monitor integral (muons) times the window rate (windows/s), in muons/s, the
definition the IOC uses for ``BEAM:RATE``.  A cut pattern leaves the asymmetries and the
minirun statistics, as a pattern with a helicity error does; its windows stay in the
helicity-sorted counts (so the totals still equal the IOC's scalers).

The decoders release good windows in whole patterns, so a cut decided on each released
chunk is the same however the stream is cut into blocks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from mupnc.monitor.decoding.stream import DecodedWindows


@dataclass
class LowBeamCut:
    """Cut patterns with a window below ``min_rate`` muons/s (see the module docstring)."""

    min_rate: float
    """Muons/s."""
    window_rate: float
    """Helicity windows/s of the run."""
    patterns_cut: int = 0
    """Good patterns cut so far."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_rate) and self.min_rate > 0):
            raise ValueError(f"the low-beam cut needs a rate > 0 muons/s, got {self.min_rate!r}")
        if not (math.isfinite(self.window_rate) and self.window_rate > 0):
            raise ValueError(f"window rate must be > 0 Hz, got {self.window_rate!r}")

    def apply(self, decoded: DecodedWindows) -> DecodedWindows:
        """``decoded`` with the good patterns that saw low beam marked not good."""
        low = decoded.good & (decoded.beam_monitor * self.window_rate < self.min_rate)
        if not low.any():
            return decoded
        cut = np.unique(decoded.pattern_number[low])
        self.patterns_cut += int(cut.size)
        good = decoded.good & ~np.isin(decoded.pattern_number, cut)
        return dataclasses.replace(decoded, good=good)
