"""The settings a run is analysed with: what the monitor reads from the IOCs at the start
of a run, or what a recorded run's database row says (:mod:`mupnc.monitor.recorded_settings`)."""

from __future__ import annotations

from dataclasses import dataclass

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.scheme import RECORDED_ROTATOR, RotatorSettings
from mupnc.monitor.analysis.blinding import UNBLINDED, Blinder


@dataclass(frozen=True)
class RunSettings:
    """What the monitor reads from the IOCs at the start of a run."""

    run: int
    pattern: str
    delay_patterns: int
    polarization: float
    channel_map: ChannelMap
    blinder: Blinder = UNBLINDED
    scheme: str = "fast"
    first_seq: int = 0
    """Sequence number of the run's first window (a replay of a time range starts later)."""
    window_rate: float | None = None
    """Helicity windows per second (None: not known, e.g. an IOC that does not serve it)."""
    rotator: RotatorSettings = RECORDED_ROTATOR
    """Slow and kick: rotator pattern and precession per turn (an IOC or a recorded run that
    does not give them: the pairs and 12 deg/turn of mupnc before 0.3)."""
