"""Layout version 2 of the window block (float64, ``docs/daq-contract.md`` §2.2), packed
as a DAQ written to contract 1.0 packs it: mupnc's IOC publishes layout 3, its reader
still takes this."""

from __future__ import annotations

import numpy as np

from mupnc.daq.blocks import MAGIC_2, WindowBlock

COLUMNS = (
    "seq",
    "pattern_number",
    "pattern_phase",
    "reported_helicity",
    "flags",
    "rotator_readback",
    "beam_monitor",
)


def layout_2_length(n: int, c: int) -> int:
    """float64 values of a layout-2 block: ``5 + n·(7 + c)``."""
    return 5 + n * (len(COLUMNS) + c)


def pack_layout_2(block: WindowBlock, length: int | None = None) -> np.ndarray:
    """``block`` as a layout-2 float64 array, zero-padded to ``length`` values if given."""
    n, c = block.n_windows, block.n_channels
    wire = np.zeros(length or layout_2_length(n, c))
    wire[:5] = (MAGIC_2, block.stream_id, block.block_number, n, c)
    for i, name in enumerate(COLUMNS):
        wire[5 + i * n : 5 + (i + 1) * n] = getattr(block, name)
    wire[5 + len(COLUMNS) * n : layout_2_length(n, c)] = block.counts.reshape(-1)
    return wire
