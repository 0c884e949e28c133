"""Helicity decoding: the actual helicity of every window, from what the DAQ reports.

:mod:`.fast` decodes the LFSR patterns of the fast scheme, :mod:`.rotator` the reversal
intervals of the slow schemes; :mod:`.stream` holds what both share.  :func:`make_decoder`
picks the decoder for a scheme, :func:`minirun_length` the minirun length.
"""

from __future__ import annotations

from mupnc.daq.helicity import pattern_shape
from mupnc.daq.scheme import SCHEMES, RotatorSettings, Scheme
from mupnc.monitor.decoding.fast import HelicityDecoder, held_windows
from mupnc.monitor.decoding.rotator import RotatorDecoder

DEFAULT_MINIRUN_PATTERNS = 9000
"""Minirun length of the fast scheme in patterns (JAPAN's default)."""
DEFAULT_MINIRUN_ROTATOR_PATTERNS = 16
"""Minirun length of the slow schemes in rotator patterns: 64 reversals (quartets), about
10 minutes at a 10 s flip period (32 reversals for recorded pair runs)."""


def make_decoder(
    scheme: str,
    pattern: str,
    delay_patterns: int,
    n_channels: int,
    rotator: RotatorSettings | None = None,
    settle_windows: int | None = None,
    window_rate: float | None = None,
) -> HelicityDecoder | RotatorDecoder:
    """The decoder for a reversal scheme: LFSR patterns (fast; held while learning for a few
    seconds at ``window_rate`` Hz, :func:`~mupnc.monitor.decoding.fast.held_windows`) or
    rotator intervals (``rotator`` required for slow and kick)."""
    if scheme == Scheme.FAST:
        held = held_windows(window_rate, pattern_shape(pattern).size)
        return HelicityDecoder(pattern, delay_patterns, n_channels, max_pending_windows=held)
    if scheme in (Scheme.SLOW, Scheme.KICK):
        if rotator is None:
            raise ValueError(f"the {scheme} scheme's decoder needs the rotator settings")
        return RotatorDecoder(scheme, n_channels, rotator, settle_windows)
    raise ValueError(f"unknown reversal scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def minirun_length(scheme: str, requested: int | None = None) -> int:
    """Patterns per minirun: ``requested``, else the scheme's default (patterns for the fast
    scheme, rotator patterns for the slow ones)."""
    if requested is not None:
        return requested
    return DEFAULT_MINIRUN_PATTERNS if scheme == Scheme.FAST else DEFAULT_MINIRUN_ROTATOR_PATTERNS
