"""What both helicity decoders share: their output, their counters, the windows they hold,
and what :meth:`StreamDecoder.feed` does with a block before a decoder looks at it.

Conventions: windows are numbered by the DAQ's sequence number ``seq`` (one per window,
gaps are missed windows); a *pattern* is the DAQ's pattern number (the fast scheme's
helicity pattern, the slow schemes' reversal interval), the *phase* a window's index in
it.  A decoder holds each window (:class:`PendingWindows`) until its actual helicity is
known, then releases it, in arrival order (:class:`DecodedWindows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mupnc.daq.blocks import WindowBlock

VARIABLE_PATTERNS = 0
"""``size`` (windows per pattern) of the slow-scheme decoder: its patterns are pairs of
reversal intervals of variable length."""

LOCK_STATES = ("LOCKED", "LEARNING", "UNLOCKED")
"""A decoder's lock (:attr:`StreamDecoder.lock_state`): predicting every window from a
verified generator or rotator sequence; learning one; or without one."""

ERROR_KINDS = (
    "prediction_mismatch",  # reported pattern polarity differs from the prediction (patterns)
    "missed_windows",  # gaps in the window sequence number (windows)
    "phase_error",  # pattern phase out of order or pattern incomplete (patterns)
    "pattern_shape",  # windows of a pattern disagree with the pattern shape (patterns)
    "stuck_helicity",  # all windows of a pattern report the same helicity (patterns)
    "settle",  # pattern contains windows inside the rotator settle gate (patterns)
    "rotator_mismatch",  # rotator readback disagrees with the decoded helicity (patterns)
    "settle_violation",  # slow schemes: settle-gate windows not flagged (intervals)
    "unequal_windows",  # a pattern holds unequal numbers of +/- windows (patterns)
    "reversal_period",  # slow schemes: interval length changed (reversal clock drift)
)

WINDOW_FIELDS = (
    "seq",
    "pattern_number",
    "pattern_phase",
    "reported_helicity",
    "flags",
    "beam_monitor",
)
"""The per-window fields of a :class:`WindowBlock` a decoder holds (besides the counts)."""


@dataclass(slots=True)
class DecodedWindows:
    """Windows released by the decoder, in sequence order (``n`` windows, ``c`` channels).

    ``helicity`` is the actual helicity (+1/-1), or 0 for a window that could not be
    decoded.  ``good`` marks windows of complete, error-free patterns; good windows come
    in whole patterns, so ``counts[good]`` reshapes to ``(patterns, pattern_size, c)``.
    ``analysing_power`` is the signed longitudinal share of the beam polarization in each
    window, ``P_L / P``: None means the helicity itself (fast and slow reversal); the ring
    kick gives ``cos(precession per turn * turns)`` from the turn readback.
    ``pattern_position`` (slow and kick only) is the index of each window's reversal
    interval in its rotator pattern (0 .. n - 1; None for the fast scheme).  ``flags`` are
    the windows' DAQ flags (:mod:`mupnc.daq.blocks`; None: not known, taken as none set).
    """

    seq: np.ndarray
    pattern_number: np.ndarray
    helicity: np.ndarray
    good: np.ndarray
    beam_monitor: np.ndarray
    counts: np.ndarray
    analysing_power: np.ndarray | None = None
    pattern_position: np.ndarray | None = None
    flags: np.ndarray | None = None

    @property
    def n_windows(self) -> int:
        return int(self.seq.size)

    @classmethod
    def concatenate(cls, parts: list[DecodedWindows]) -> DecodedWindows:
        """Consecutive releases as one (the analysing power stays None if it is None in
        every part; elsewhere a None part contributes its helicity; the pattern positions
        are those of rotator decoders, None for the fast one; flags are None only if None in
        every part, elsewhere a None part has none set)."""
        arrays = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("seq", "pattern_number", "helicity", "good", "beam_monitor", "counts")
        }
        power = None
        if any(p.analysing_power is not None for p in parts):
            power = np.concatenate([p.signed_polarization() for p in parts])
        positions = [p.pattern_position for p in parts if p.pattern_position is not None]
        position = np.concatenate(positions) if len(positions) == len(parts) else None
        flags = None
        if any(p.flags is not None for p in parts):
            flags = np.concatenate([p.window_flags() for p in parts])
        return cls(**arrays, analysing_power=power, pattern_position=position, flags=flags)

    def window_flags(self) -> np.ndarray:
        """The DAQ flags of every window (zeros where not known)."""
        if self.flags is None:
            return np.zeros(self.n_windows, dtype=np.uint8)
        return self.flags

    def signed_polarization(self) -> np.ndarray:
        """``P_L / P`` of every window: the analysing power, else the helicity."""
        if self.analysing_power is None:
            return self.helicity.astype(np.float64)
        return self.analysing_power


@dataclass
class DecoderState:
    """Counters a monitor publishes; all cumulative since the run started."""

    windows_seen: int = 0
    windows_released: int = 0
    windows_undecoded: int = 0
    patterns_good: int = 0
    last_seq: int = -1
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))


def out_of_sequence(
    pattern: np.ndarray, newest: int, held: int, size: int | None
) -> tuple[np.ndarray, int, int]:
    """Windows that do not continue the pattern sequence, decided window by window.

    A window is out of sequence if its pattern number is below one seen before it, or
    (``size`` not None) if its pattern already holds ``size`` windows.  ``newest`` is the
    highest pattern number seen before ``pattern`` and ``held`` its windows so far; returns
    the mask and the updated ``(newest, held)``.
    """
    if pattern.size == 0:
        return np.zeros(0, dtype=bool), newest, held
    out = pattern < np.maximum.accumulate(np.r_[newest, pattern])[:-1]
    if size is not None:
        kept = np.flatnonzero(~out)
        numbers = pattern[kept]  # non-decreasing
        index = np.arange(numbers.size)
        first = np.maximum.accumulate(np.where(np.r_[True, numbers[1:] != numbers[:-1]], index, 0))
        rank = index - first + np.where((first == 0) & (numbers == newest), held, 0)
        out[kept[rank >= size]] = True
    kept_numbers = pattern[~out]
    if kept_numbers.size:
        last = int(kept_numbers[-1])
        held = int(np.count_nonzero(kept_numbers == last)) + (held if last == newest else 0)
        newest = last
    return out, newest, held


def count_missed(state: DecoderState, seq: np.ndarray) -> None:
    """Count gaps in the window sequence numbers (``missed_windows``) and advance ``last_seq``."""
    if seq.size == 0:
        return
    previous = np.concatenate([[state.last_seq], seq[:-1]])
    gaps = seq - previous - 1
    state.errors["missed_windows"] += int(gaps[gaps > 0].sum())
    state.last_seq = int(seq[-1])


def in_order(ready: np.ndarray) -> np.ndarray:
    """Release strictly in order: clear ``ready`` from the first window that is not."""
    blocked = np.flatnonzero(~ready)
    if blocked.size:
        ready[blocked[0] :] = False
    return ready


class PendingWindows:
    """The windows a decoder holds, in arrival order (``n`` windows, ``c`` channels).

    ``pending[name]`` is one field per window: the :data:`WINDOW_FIELDS`, ``readback``
    (the rotator readback as fed: +1/-1 and 0 while ramping, or the kick turn number; NaN
    where not known) and ``stray`` (1 for a window out of sequence, else 0).  All are
    float64 (exact for the integer fields; take ``.astype(np.int64)`` to count with
    them); ``counts`` is int64, shape ``(n, c)``.
    """

    def __init__(self, n_channels: int) -> None:
        self._fields = {name: np.empty(0) for name in (*WINDOW_FIELDS, "readback", "stray")}
        self.counts = np.empty((0, n_channels), dtype=np.int64)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._fields[name]

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def admit(self, block: WindowBlock, readback: np.ndarray, stray: np.ndarray) -> None:
        """Append ``block``'s windows, with their ``readback`` and ``stray`` mask.  With
        nothing held, the block's counts are held as they are (no copy: nobody writes
        into a block's arrays)."""
        counts = np.asarray(block.counts, dtype=np.int64)
        added = {name: getattr(block, name) for name in WINDOW_FIELDS}
        added |= {"readback": readback, "stray": stray}
        if not len(self):
            self._fields = {name: np.asarray(v, dtype=np.float64) for name, v in added.items()}
            self.counts = counts
            return
        for name, values in added.items():
            self._fields[name] = np.concatenate([self._fields[name], values])
        self.counts = np.concatenate([self.counts, counts])

    def rows(self, take: np.ndarray) -> np.ndarray | slice:
        """``take`` (increasing indices of held windows) as a slice where it is the first
        ``take.size`` windows, the usual release: their fields are then views, not copies."""
        if take.size and take[-1] == take.size - 1:
            return slice(0, take.size)
        return take

    def drop(self, released: np.ndarray) -> None:
        """Forget the windows where the boolean mask ``released`` is set; keep the rest."""
        rows = self.rows(np.flatnonzero(released))
        keep = slice(rows.stop, None) if isinstance(rows, slice) else ~released
        for name, values in self._fields.items():
            self._fields[name] = values[keep]
        self.counts = self.counts[keep]


class StreamDecoder:
    """Base of both decoders: :meth:`feed` it window blocks, end the run with :meth:`flush`.

    ``pattern_windows`` is the number of windows of a complete DAQ pattern (fast scheme),
    or None where a pattern (a reversal interval) may hold any number.  A subclass decides
    in :meth:`_process` which held windows to release, and releases them with
    :meth:`_release_windows`.
    """

    def __init__(
        self, n_channels: int, max_pending_windows: int, pattern_windows: int | None
    ) -> None:
        self.n_channels = n_channels
        self.max_pending_windows = max_pending_windows
        self.state = DecoderState()
        self._pattern_windows = pattern_windows
        self._pending = PendingWindows(n_channels)
        self._newest, self._held = -1, 0  # highest DAQ pattern number seen, its windows
        self._released_pattern = -1  # (monitor) pattern number of the last window released

    def feed(
        self, block: WindowBlock, rotator_readback: np.ndarray | None = None
    ) -> DecodedWindows:
        """Add a block of windows; returns the windows whose helicity is now known.

        ``rotator_readback`` (one value per window; default: the block's own) is checked
        against the decoded helicity: a pattern where they differ is cut and counted as
        ``rotator_mismatch``.  Windows out of sequence (:func:`out_of_sequence`) are
        counted as ``phase_error`` and released undecoded.
        """
        count_missed(self.state, block.seq)
        self.state.windows_seen += block.n_windows
        if rotator_readback is None:
            rotator_readback = block.rotator_readback
        readback = np.asarray(rotator_readback, dtype=np.float64)
        stray, self._newest, self._held = out_of_sequence(
            block.pattern_number.astype(np.int64), self._newest, self._held, self._pattern_windows
        )
        self.state.errors["phase_error"] += int(stray.sum())
        self._pending.admit(block, readback, stray)
        return self._process(final=False)

    def flush(self) -> DecodedWindows:
        """End of run: close the last pattern and release everything still held."""
        return self._process(final=True)

    @property
    def windows_held(self) -> int:
        """Windows received and not released yet (waiting for their helicity)."""
        return len(self._pending)

    @property
    def lock_state(self) -> str:
        """One of :data:`LOCK_STATES`."""
        raise NotImplementedError

    def _process(self, final: bool) -> DecodedWindows:
        """Close the patterns that can be closed, release the windows now known (all of
        them if ``final``)."""
        raise NotImplementedError

    def _release_windows(
        self,
        ready: np.ndarray,
        pattern: np.ndarray,
        helicity: np.ndarray,
        good: np.ndarray,
        patterns_good: int,
        position: np.ndarray | None = None,
    ) -> DecodedWindows:
        """Release the held windows where ``ready`` is set, under (monitor) ``pattern``
        numbers, with their ``helicity`` and ``good`` flags (and rotator ``position``s);
        count them, and ``patterns_good`` good patterns."""
        released = np.count_nonzero(ready)
        take = self._pending.rows(np.flatnonzero(ready))
        if released:
            self.state.patterns_good += patterns_good
            self.state.windows_undecoded += int(np.count_nonzero(helicity == 0))
            self.state.windows_released += int(released)
            self._released_pattern = int(pattern[-1])
        out = DecodedWindows(
            seq=self._pending["seq"][take].astype(np.int64),
            pattern_number=pattern,
            helicity=helicity,
            good=good,
            beam_monitor=self._pending["beam_monitor"][take],
            counts=self._pending.counts[take],
            analysing_power=self._analysing_power(take, helicity),
            pattern_position=position,
            flags=self._pending["flags"][take].astype(np.uint8),
        )
        self._pending.drop(ready)
        return out

    def _analysing_power(self, take: np.ndarray | slice, helicity: np.ndarray) -> np.ndarray | None:
        """``P_L / P`` of the released windows ``take`` (see :class:`DecodedWindows`)."""
        return None

    def _overdue(
        self, pattern: np.ndarray, held: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Patterns held too long: of the held windows where ``held`` is set (``pattern``:
        the number of each held window), the patterns whose first window comes
        ``max_pending_windows`` or more sequence numbers before one of ``starts`` (the first
        sequence numbers of the patterns closed by this feed, increasing).  Returns their
        numbers and, for each, the index in ``starts`` of the first such closing."""
        numbers, first = np.unique(pattern[held], return_index=True)
        seq = self._pending["seq"][np.flatnonzero(held)[first]].astype(np.int64)
        at = np.searchsorted(starts, seq + self.max_pending_windows)
        late = at < starts.size
        return numbers[late], at[late]

    def _reached_pattern(self, number: np.ndarray) -> np.ndarray:
        """Pattern numbers of windows to release: out-of-sequence windows go under the
        pattern number reached so far."""
        return np.maximum.accumulate(np.r_[self._released_pattern, number])[1:]
