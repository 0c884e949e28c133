"""What the Channel Access ingest counts (:mod:`mupnc.monitor.ingest`): a pure record the
alarms and the result PVs read without loading pyepics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IngestCounters:
    """Cumulative since the run started: blocks by fate, windows lost or dropped."""

    blocks_received: int = 0
    blocks_refilled: int = 0
    blocks_lost: int = 0
    windows_lost: int = 0
    malformed: int = 0
    streams: int = 0
    """Window streams seen (more than one: the IOC was restarted during the run)."""
    duplicate_windows: int = 0
    """Windows dropped because their sequence number was delivered already."""
