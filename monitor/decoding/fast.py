"""Helicity decoding: from the DAQ's reported helicity to the actual helicity of every window.

JAPAN semantics (shared/reference/parity-analysis.md, section 3), made lossless:

* Patterns are recognised from the DAQ's pattern number and phase.  Each complete
  pattern yields one reported pattern polarity; 30 consecutive ones give the generator
  state (*lock*).  Every later polarity is predicted and checked; a mismatch drops the
  lock and the state is learned again from the next 30 patterns.
* A lock is trusted once ``confirm_patterns`` predictions in a row came true (default 30:
  a wrong state, e.g. learned from a flipped report, can predict up to 29 bits right, but
  not 30 in a row, since the LFSR is linear and maximal-length).  The
  actual polarity of pattern ``p`` is generator bit ``p + delay`` (see :mod:`mupnc.daq.helicity`),
  taken from the trusted generator state, never from a raw report, so a flipped
  reported bit cannot mis-sort a window.
* Windows are held until their actual helicity is known (bit ``p + delay`` verified by a
  matching report), then released in order.  Nothing is dropped: a pattern whose
  helicity is still unknown when a pattern starting ``max_pending_windows`` sequence
  numbers later closes is given up, released with helicity 0.

Chunk invariance: the released windows, their helicities and every counter are a pure
function of the window stream, however it is cut into blocks.  Patterns close one by one
in order, and every decision is tied to a pattern's closing (the lock as it stood right
after that pattern, the verified bits then), never to the end of a :meth:`feed`.  A
window that does not continue the pattern sequence (numbered below a pattern already
seen, or beyond the last window of its pattern: :func:`out_of_sequence`) is counted as a
``phase_error`` and released undecoded, under the pattern number reached so far.

Checks counted per kind (:data:`ERROR_KINDS`); a pattern with any error is cut from the
asymmetry but its windows are still sorted by helicity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mupnc.daq.blocks import FLAG_PATTERN_SYNC, FLAG_SETTLE, WindowBlock
from mupnc.daq.helicity import (
    LFSR_BITS,
    lfsr30_back_step,
    lfsr30_step,
    pattern_shape,
    register_from_bits,
)

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

_FIELDS = ("seq", "pattern_number", "pattern_phase", "reported_helicity", "flags", "beam_monitor")


@dataclass(slots=True)
class DecodedWindows:
    """Windows released by the decoder, in sequence order (``n`` windows, ``c`` channels).

    ``helicity`` is the actual helicity (+1/-1), or 0 for a window that could not be
    decoded.  ``good`` marks windows of complete, error-free patterns; good windows come
    in whole patterns, so ``counts[good]`` reshapes to ``(patterns, pattern_size, c)``.
    """

    seq: np.ndarray
    pattern_number: np.ndarray
    helicity: np.ndarray
    good: np.ndarray
    beam_monitor: np.ndarray
    counts: np.ndarray

    @property
    def n_windows(self) -> int:
        return int(self.seq.size)


@dataclass
class DecoderState:
    """Counters a monitor publishes; all cumulative since the run started."""

    windows_seen: int = 0
    windows_released: int = 0
    windows_undecoded: int = 0
    patterns_good: int = 0
    last_seq: int = -1
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))


def _generator_bits(anchor: tuple[int, int], indices: np.ndarray) -> np.ndarray:
    """Generator bits at increasing ``indices`` from ``anchor`` = (index, register after it)."""
    index, register = anchor
    first = int(indices[0])
    while index > first:
        register = lfsr30_back_step(register)
        index -= 1
    out = np.empty(indices.size, dtype=np.int64)
    for j, target in enumerate(indices.tolist()):
        while index < target:
            _, register = lfsr30_step(register)
            index += 1
        out[j] = register & 1
    return out


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


class HelicityDecoder:
    """Streaming decoder: :meth:`feed` it window blocks, end the run with :meth:`flush`."""

    def __init__(
        self,
        pattern: str,
        delay_patterns: int,
        n_channels: int,
        confirm_patterns: int = LFSR_BITS,
        max_pending_windows: int = 1 << 17,
    ) -> None:
        self.shape = pattern_shape(pattern)
        self.size = int(self.shape.size)
        self.delay = int(delay_patterns)
        self.n_channels = n_channels
        self.confirm_patterns = confirm_patterns
        self.max_pending_windows = max_pending_windows
        self.state = DecoderState()
        self._pending = {name: np.empty(0) for name in (*_FIELDS, "readback", "stray")}
        self._pending_counts = np.empty((0, n_channels), dtype=np.int64)
        self._newest, self._held = -1, 0  # highest pattern number seen, its windows
        self._released_pattern = -1  # pattern number of the last window released
        self._learning: list[tuple[int, int]] = []  # consecutive (pattern, bit) since last reset
        self._lock: tuple[int, int] | None = None  # (pattern index, register after its bit)
        self._lineage = 0  # counts the locks learned (a lock's predictions are its own)
        self._confirmations = 0
        self._verified_through = -1  # generator bits up to this index are trusted
        self._trusted: tuple[int, int] | None = None  # lock that produced the trusted bits
        self._last_closed_pattern = -1
        self._bad_patterns: set[int] = set()  # closed, not yet released, cut from analysis
        self._rotator_checked: set[int] = set()  # readback checked against the prediction
        self._given_up: set[int] = set()  # closed, never decodable, released undecoded
        self._closings = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        """Patterns closed by the last feed: (first sequence number, verified-through after)."""

    # -- public -------------------------------------------------------------------------

    def feed(
        self, block: WindowBlock, rotator_readback: np.ndarray | None = None
    ) -> DecodedWindows:
        """Add a block of windows; returns the windows whose helicity is now known.

        ``rotator_readback`` (one value per window, +1/-1) is checked against the decoded
        helicity: a pattern where they differ is cut and counted as ``rotator_mismatch``.
        """
        count_missed(self.state, block.seq)
        self.state.windows_seen += block.n_windows
        if rotator_readback is None:
            rotator_readback = block.rotator_readback
        readback = np.asarray(rotator_readback, dtype=np.float64)
        stray, self._newest, self._held = out_of_sequence(
            block.pattern_number.astype(np.int64), self._newest, self._held, self.size
        )
        self.state.errors["phase_error"] += int(stray.sum())
        self._pending["readback"] = np.concatenate([self._pending["readback"], readback])
        self._pending["stray"] = np.concatenate([self._pending["stray"], stray])
        for name in _FIELDS:
            self._pending[name] = np.concatenate([self._pending[name], getattr(block, name)])
        self._pending_counts = np.concatenate([self._pending_counts, block.counts])
        return self._process(final=False)

    def flush(self) -> DecodedWindows:
        """End of run: close the last pattern and release everything still held."""
        return self._process(final=True)

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._confirmations >= self.confirm_patterns

    # -- internals ----------------------------------------------------------------------

    def _process(self, final: bool) -> DecodedWindows:
        pattern = self._pending["pattern_number"].astype(np.int64)
        stray = self._pending["stray"] > 0
        self._closings = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        in_sequence = pattern[~stray]
        if in_sequence.size:
            newest = in_sequence[-1]
            newest_complete = np.count_nonzero(in_sequence == newest) >= self.size
            closed_upto = newest if (final or newest_complete) else newest - 1
            self._check_closed_patterns(pattern, stray, closed_upto)
        releasable = self._releasable(pattern, stray, final)
        return self._release(releasable)

    def _check_closed_patterns(
        self, pattern: np.ndarray, stray: np.ndarray, closed_upto: int
    ) -> None:
        """Run the per-pattern checks and the LFSR on patterns closed since last time."""
        new = (pattern > self._last_closed_pattern) & (pattern <= closed_upto) & ~stray
        if not new.any():
            return
        idx = np.flatnonzero(new)
        numbers, first, sizes = np.unique(pattern[idx], return_index=True, return_counts=True)
        phase = self._pending["pattern_phase"][idx]
        reported = self._pending["reported_helicity"][idx]
        flags = self._pending["flags"][idx].astype(np.int64)

        complete = sizes == self.size
        polarity = np.zeros(numbers.size, dtype=np.int64)  # 0 = pattern gives no polarity
        bad = ~complete
        full = np.flatnonzero(complete)
        if full.size:
            rows = first[full][:, None] + np.arange(self.size)[None, :]
            phase_ok = (phase[rows] == np.arange(self.size)).all(axis=1)
            relative = reported[rows] * self.shape[None, :]
            shape_ok = (relative == relative[:, :1]).all(axis=1)
            stuck = (reported[rows] == reported[rows][:, :1]).all(axis=1)
            settle = (flags[rows] & FLAG_SETTLE).any(axis=1)
            errors = self.state.errors
            errors["phase_error"] += int((~phase_ok).sum())
            unequal = reported[rows].sum(axis=1) != 0
            errors["stuck_helicity"] += int((phase_ok & stuck).sum())
            errors["unequal_windows"] += int((phase_ok & ~stuck & unequal).sum())
            errors["pattern_shape"] += int((phase_ok & ~stuck & ~unequal & ~shape_ok).sum())
            errors["settle"] += int(settle.sum())
            usable = phase_ok & shape_ok
            polarity[full[usable]] = relative[usable, 0]
            bad[full] = ~usable | settle
        self.state.errors["phase_error"] += int((~complete).sum())

        mismatched, verified, predicted = self._run_generator(numbers, polarity)
        self._closings = (self._pending["seq"][idx][first].astype(np.int64), verified)
        # a confirmed lock right after a pattern closed predicts its actual helicity now,
        # `delay` patterns early: check the rotator readback against it
        check = full[predicted[full] >= 0]
        if check.size:
            rows = first[check][:, None] + np.arange(self.size)[None, :]
            readback = self._pending["readback"][idx][rows]
            actual = (2 * predicted[check] - 1)[:, None] * self.shape[None, :]
            wrong = (np.isfinite(readback) & (readback != actual)).any(axis=1)
            self.state.errors["rotator_mismatch"] += int(wrong.sum())
            self._rotator_checked.update(numbers[check].tolist())
            bad[check] |= wrong
        self._bad_patterns.update(numbers[bad | mismatched].tolist())
        self._last_closed_pattern = int(closed_upto)

    def _run_generator(
        self, numbers: np.ndarray, polarity: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Learn/predict/verify the LFSR over closed patterns, one by one in order.

        Returns per pattern: whether its report mismatched the prediction, the index the
        generator bits were verified through right after it, and the actual-polarity bit
        predicted by a confirmed lock standing right after it (-1 without one).
        """
        mismatched = np.zeros(numbers.size, dtype=bool)
        verified = np.empty(numbers.size, dtype=np.int64)
        lineage = np.full(numbers.size, -1)
        anchors: dict[int, tuple[int, int]] = {}
        for i, (p, pol) in enumerate(zip(numbers.tolist(), polarity.tolist(), strict=True)):
            mismatched[i] = self._next_polarity(p, pol)
            verified[i] = self._verified_through
            if self.locked:
                lineage[i] = self._lineage
                anchors.setdefault(self._lineage, self._lock)
        predicted = np.full(numbers.size, -1, dtype=np.int64)
        for line, anchor in anchors.items():
            mine = lineage == line
            predicted[mine] = _generator_bits(anchor, numbers[mine] + self.delay)
        return mismatched, verified, predicted

    def _next_polarity(self, p: int, pol: int) -> bool:
        """One closed pattern's polarity (0: none) through the LFSR; True on a mismatch."""
        bit = 1 if pol > 0 else 0
        if self._lock is not None:
            index, register = self._lock
            while index < p:  # step over patterns that gave no polarity, too
                _, register = lfsr30_step(register)
                index += 1
            self._lock = (index, register)
            if pol == 0:
                return False
            if (register & 1) == bit:
                self._confirmations += 1
                if self._confirmations >= self.confirm_patterns:
                    self._verified_through = p
                    self._trusted = self._lock
                return False
            self.state.errors["prediction_mismatch"] += 1
            self._lock, self._confirmations, self._learning = None, 0, []
            return True
        if pol == 0 or (self._learning and self._learning[-1][0] != p - 1):
            self._learning = []
        if pol != 0:
            self._learning.append((p, bit))
        if len(self._learning) == LFSR_BITS:
            self._lock = (p, register_from_bits([b for _, b in self._learning]))
            self._lineage += 1
            self._learning = []
        return False

    def _releasable(self, pattern: np.ndarray, stray: np.ndarray, final: bool) -> np.ndarray:
        if pattern.size == 0:
            return np.zeros(0, dtype=bool)
        closed = (pattern <= self._last_closed_pattern) & ~stray
        if final and self.locked:
            # Last patterns of the run: no later report can verify them; the confirmed
            # lock's prediction is the best (and JAPAN's) answer.
            self._verified_through = max(self._verified_through, int(pattern[-1]) + self.delay)
            self._trusted = self._lock
        ready = (closed & (pattern + self.delay <= self._verified_through)) | stray
        self._give_up(pattern, closed)
        if final:
            ready[:] = True
        elif self._given_up:
            ready |= closed & np.isin(pattern, list(self._given_up))
        # Release strictly in order: stop at the first window that is not ready.
        blocked = np.flatnonzero(~ready)
        if blocked.size:
            ready[blocked[0] :] = False
        return ready

    def _give_up(self, pattern: np.ndarray, closed: np.ndarray) -> None:
        """Give up the closed patterns whose helicity was still unknown when the first
        pattern starting ``max_pending_windows`` sequence numbers after them closed (known
        by now or not: the answer must not depend on how far this feed reached)."""
        starts, verified = self._closings
        if not closed.any() or not starts.size:
            return
        numbers, first = np.unique(pattern[closed], return_index=True)
        seq = self._pending["seq"][np.flatnonzero(closed)[first]].astype(np.int64)
        at = np.searchsorted(starts, seq + self.max_pending_windows)
        late = at < starts.size
        unknown = verified[at[late]] < numbers[late] + self.delay
        self._given_up.update(numbers[late][unknown].tolist())

    def _bits(self, first: int, last: int) -> np.ndarray:
        """Trusted generator bits for indices ``first .. last`` (-1 where unknown)."""
        out = np.full(last - first + 1, -1, dtype=np.int64)
        known_last = min(last, self._verified_through)
        if self._trusted is not None and known_last >= first:
            indices = np.arange(first, known_last + 1)
            out[: indices.size] = _generator_bits(self._trusted, indices)
        return out

    def _true_phase(self, take: np.ndarray, pattern: np.ndarray) -> np.ndarray:
        """Window phases counted from the pattern-sync window (a corrupt published phase
        must not mis-sort a window); the published phase where no sync window arrived."""
        seq = self._pending["seq"][take].astype(np.int64)
        phase = self._pending["pattern_phase"][take].astype(np.int64)
        sync = (self._pending["flags"][take].astype(np.int64) & FLAG_PATTERN_SYNC) != 0
        if not sync.any():
            return phase
        sync_pattern, sync_seq = pattern[sync], seq[sync]
        at = np.minimum(np.searchsorted(sync_pattern, pattern), sync_pattern.size - 1)
        counted = seq - sync_seq[at]
        use = (sync_pattern[at] == pattern) & (counted >= 0) & (counted < self.size)
        return np.where(use, counted, phase)

    def _release(self, ready: np.ndarray) -> DecodedWindows:
        take = np.flatnonzero(ready)
        number = self._pending["pattern_number"][take].astype(np.int64)
        # out-of-sequence windows go under the pattern number reached so far
        pattern = np.maximum.accumulate(np.r_[self._released_pattern, number])[1:]
        helicity = np.zeros(take.size, dtype=np.int8)
        good = np.zeros(take.size, dtype=bool)
        ok = np.flatnonzero(self._pending["stray"][take] == 0)
        if ok.size:
            number, where = number[ok], take[ok]
            phase = self._true_phase(where, number)
            bits = self._bits(int(number[0]) + self.delay, int(number[-1]) + self.delay)
            bit = bits[number - int(number[0])]
            known = (bit >= 0) & ~np.isin(number, list(self._given_up))
            decoded = np.zeros(ok.size, dtype=np.int8)
            decoded[known] = ((2 * bit[known] - 1) * self.shape[phase[known]]).astype(np.int8)
            readback = self._pending["readback"][where]
            unchecked = ~np.isin(number, list(self._rotator_checked))
            disagree = known & unchecked & np.isfinite(readback) & (readback != decoded)
            if disagree.any():
                wrong = np.unique(number[disagree])
                self.state.errors["rotator_mismatch"] += int(wrong.size)
                self._bad_patterns.update(wrong.tolist())
            bad = np.isin(number, list(self._bad_patterns))
            numbers, counts = np.unique(number, return_counts=True)
            whole = np.isin(number, numbers[counts == self.size])
            helicity[ok], good[ok] = decoded, known & whole & ~bad
            self._bad_patterns.difference_update(numbers.tolist())
            self._rotator_checked.difference_update(numbers.tolist())
            self._given_up.difference_update(numbers.tolist())
        if take.size:
            self.state.patterns_good += int(good.sum()) // self.size
            self.state.windows_undecoded += int(np.count_nonzero(helicity == 0))
            self.state.windows_released += int(take.size)
            self._released_pattern = int(pattern[-1])
        out = DecodedWindows(
            seq=self._pending["seq"][take].astype(np.int64),
            pattern_number=pattern,
            helicity=helicity,
            good=good,
            beam_monitor=self._pending["beam_monitor"][take],
            counts=self._pending_counts[take],
        )
        keep = ~ready
        for name in self._pending:
            self._pending[name] = self._pending[name][keep]
        self._pending_counts = self._pending_counts[keep]
        return out
