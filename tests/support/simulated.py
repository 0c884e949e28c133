"""The monitor's view of a simulated run, for tests that analyse windows in-process."""

from __future__ import annotations

from mupnc.monitor.analysis.settings import RunSettings
from mupnc.sim.source import SourceConfig


def settings_of(config: SourceConfig, run: int = 1) -> RunSettings:
    """What the monitor reads from an IOC simulating ``config`` (run ``run``)."""
    return RunSettings(
        run=run,
        pattern=config.pattern,
        delay_patterns=config.delay_patterns,
        polarization=config.polarization,
        channel_map=config.resolved_channel_map(),
        scheme=config.scheme,
        rotator=config.rotator,
        window_rate=config.window_rate,
    )
