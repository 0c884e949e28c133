"""Helicity decoding: the actual helicity of every window, from what the DAQ reports.

:mod:`.fast` decodes the LFSR patterns of the fast scheme, :mod:`.rotator` the reversal
intervals of the slow schemes; :mod:`.stream` holds what both share.  :func:`make_decoder`
picks the decoder for a scheme, :func:`minirun_length` the minirun length.
"""

from __future__ import annotations

from mupnc.daq.scheme import SCHEMES, Scheme
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder

DEFAULT_MINIRUN_PATTERNS = 9000
"""Minirun length of the fast scheme in patterns (JAPAN's default)."""
DEFAULT_MINIRUN_PAIRS = 16
"""Minirun length of the slow schemes in patterns (interval pairs): 32 reversals, about
JAPAN's 5-minute minirun at a 10 s flip period."""


def make_decoder(
    scheme: str,
    pattern: str,
    delay_patterns: int,
    n_channels: int,
    settle_windows: int | None = None,
) -> HelicityDecoder | RotatorDecoder:
    """The decoder for a reversal scheme: LFSR patterns (fast) or rotator intervals."""
    if scheme == Scheme.FAST:
        return HelicityDecoder(pattern, delay_patterns, n_channels)
    if scheme in (Scheme.SLOW, Scheme.KICK):
        return RotatorDecoder(scheme, n_channels, settle_windows)
    raise ValueError(f"unknown reversal scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def minirun_length(scheme: str, requested: int | None = None) -> int:
    """Patterns per minirun: ``requested``, else the scheme's default (patterns for the fast
    scheme, interval pairs for the slow ones)."""
    if requested is not None:
        return requested
    return DEFAULT_MINIRUN_PATTERNS if scheme == Scheme.FAST else DEFAULT_MINIRUN_PAIRS
