"""Give freed memory back to the system (glibc).

The monitor handles window blocks of hundreds of kB (0.4 MB at MOLLER scale) in bursts: a
refill from the IOC's ring, the blocks buffered while the database is away.  glibc raises
its mmap threshold each time such a block is freed, so later blocks land in the heap,
whose pages stay with the process after the burst; the resident memory then stays at its
peak.  A fixed threshold keeps large arrays in their own mappings, returned when freed
(glibc ``mallopt``; the environment's ``MALLOC_MMAP_THRESHOLD_`` does the same).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("mupnc.monitor.memory")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters (malloc.h)."""
MMAP_THRESHOLD = 64 * 1024
"""Bytes from which an allocation gets its own mapping (glibc's default start, kept)."""
TRIM_THRESHOLD = 128 * 1024
"""Free bytes at the top of the heap beyond which glibc gives them back."""


def return_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; False (and nothing done) on
    a C library without ``mallopt``."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if not done:
        log.warning("mallopt refused the thresholds: freed memory may stay with the monitor")
    return bool(done)
