"""Helicity decoding: from the DAQ's reported helicity to the actual helicity of every window.

JAPAN semantics (``QwHelicity::PredictHelicity`` and its checks), made lossless:

* Patterns are recognised from the DAQ's pattern number and phase.  Each complete
  pattern yields one reported pattern polarity; 30 consecutive ones give the generator
  state (*lock*).  Every later polarity is predicted and checked.
* A lock is trusted once ``confirm_patterns`` predictions in a row came true (default 30:
  a wrong state, e.g. learned from a flipped report, can predict up to 29 bits right, but
  not 30 in a row, since the LFSR is linear and maximal-length).  Before that, a mismatch
  drops the lock and the state is learned again from the next 30 patterns.
* A trusted lock survives isolated mismatches (a flaky report: each one counted as
  ``prediction_mismatch``, its pattern cut, the windows still sorted by the generator); it
  is dropped only when the generator itself is contradicted: :data:`CONTRADICTING` of its
  last :data:`CONTRADICTION_SPAN` predictions missed, what a wrong state (a reseeded board,
  a changed delay) gives within a few dozen patterns, since it predicts at random, and a
  board flipping even 20 % of its reports reaches once in 1e4 looks.  After a mismatch the
  generator's bits count as verified again only once :data:`RECONFIRM_PATTERNS`
  predictions in a row came true (the windows wait meanwhile): a wrong state does that by
  chance once in 65,536 tries, so a reseeded board cannot get windows sorted by the old
  state before it is dropped; a board flipping 5 % of its reports delays them ~25
  patterns.  The
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
seen, or beyond the last window of its pattern:
:func:`~mupnc.monitor.decoding.stream.out_of_sequence`) is counted as a ``phase_error``
and released undecoded, under the pattern number reached so far.

Checks counted per kind (:data:`~mupnc.monitor.decoding.stream.ERROR_KINDS`); a pattern
with any error is cut from the asymmetry but its windows are still sorted by helicity.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from mupnc.daq.blocks import FLAG_PATTERN_SYNC, FLAG_SETTLE
from mupnc.daq.helicity import (
    LFSR_BITS,
    lfsr30_back_step,
    lfsr30_step,
    pattern_shape,
    register_from_bits,
)
from mupnc.monitor.decoding.stream import DecodedWindows, StreamDecoder, in_order

CONTRADICTION_SPAN = 32
"""Predictions of a trusted lock judged together (patterns)."""
CONTRADICTING = 16
"""Missed predictions among the last :data:`CONTRADICTION_SPAN` that drop a trusted lock."""
RECONFIRM_PATTERNS = 16
"""Predictions in a row that must come true after a mismatch before bits count as verified."""
HOLD_SECONDS = 5.0
"""Seconds of windows a decoder holds while learning before it gives them up."""
LEARNING_PATTERNS = 90
"""Patterns held at least: 30 to learn the generator, 30 to confirm it, 30 to spare."""
UNKNOWN_RATE_HOLD = 1 << 17
"""Windows held when the window rate is unknown."""


def held_windows(window_rate: float | None, pattern_size: int) -> int:
    """``max_pending_windows`` for a run at ``window_rate`` Hz: :data:`HOLD_SECONDS` of
    windows, never fewer than :data:`LEARNING_PATTERNS` patterns (a clean stream locks
    within that); :data:`UNKNOWN_RATE_HOLD` without a rate."""
    if window_rate is None or not window_rate > 0:
        return UNKNOWN_RATE_HOLD
    return max(round(HOLD_SECONDS * window_rate), LEARNING_PATTERNS * pattern_size)


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


class HelicityDecoder(StreamDecoder):
    """Streaming LFSR decoder: :meth:`feed` it window blocks, end the run with :meth:`flush`."""

    def __init__(
        self,
        pattern: str,
        delay_patterns: int,
        n_channels: int,
        confirm_patterns: int = LFSR_BITS,
        max_pending_windows: int = UNKNOWN_RATE_HOLD,
    ) -> None:
        self.shape = pattern_shape(pattern)
        self.size = int(self.shape.size)
        super().__init__(n_channels, max_pending_windows, pattern_windows=self.size)
        self.delay = int(delay_patterns)
        self.confirm_patterns = confirm_patterns
        self._learning: list[tuple[int, int]] = []  # consecutive (pattern, bit) since last reset
        self._lock: tuple[int, int] | None = None  # (pattern index, register after its bit)
        self._lineage = 0  # counts the locks learned (a lock's predictions are its own)
        self._confirmations = 0
        self._recent_misses: deque[bool] = deque(maxlen=CONTRADICTION_SPAN)
        self._since_miss = RECONFIRM_PATTERNS  # predictions come true since the last miss
        self._contradicted = False  # a trusted lock was dropped: the next one starts afresh
        self._bits_from = 0  # generator bits before this index are not the trusted lock's
        self._verified_through = -1  # generator bits up to this index are trusted
        self._trusted: tuple[int, int] | None = None  # lock that produced the trusted bits
        self._last_closed_pattern = -1
        self._bad_patterns: set[int] = set()  # closed, not yet released, cut from analysis
        self._rotator_checked: set[int] = set()  # readback checked against the prediction
        self._given_up: set[int] = set()  # closed, never decodable, released undecoded
        self._closings = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        """Patterns closed by the last feed: (first sequence number, verified-through after)."""

    # -- public -------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._confirmations >= self.confirm_patterns

    @property
    def lock_state(self) -> str:
        """LOCKED (trusted generator), LEARNING (polarities collected or a lock being
        confirmed) or UNLOCKED (nothing to learn from: no complete clean pattern lately)."""
        if self.locked:
            return "LOCKED"
        return "LEARNING" if self._lock is not None or self._learning else "UNLOCKED"

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
            if self.locked and self._lock is not None:
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
                    self._recent_misses.append(False)
                    self._since_miss += 1
                    if self._since_miss >= RECONFIRM_PATTERNS:
                        self._verified_through = p
                        self._trusted = self._lock
                return False
            self.state.errors["prediction_mismatch"] += 1
            if self.locked:  # trusted: an isolated mismatch is the report's, not the lock's
                self._recent_misses.append(True)
                self._since_miss = 0
                if sum(self._recent_misses) < CONTRADICTING:
                    return True
                self._contradicted = True
            self._lock, self._confirmations, self._learning = None, 0, []
            self._recent_misses.clear()
            self._since_miss = RECONFIRM_PATTERNS
            return True
        if pol == 0 or (self._learning and self._learning[-1][0] != p - 1):
            self._learning = []
        if pol != 0:
            self._learning.append((p, bit))
        if len(self._learning) == LFSR_BITS:
            if self._contradicted:  # a new generator: it knows nothing of bits before it
                self._bits_from = max(self._bits_from, self._learning[0][0])
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
        return in_order(ready)

    def _give_up(self, pattern: np.ndarray, closed: np.ndarray) -> None:
        """Give up the closed patterns whose helicity was still unknown when the first
        pattern starting ``max_pending_windows`` sequence numbers after them closed (known
        by now or not: the answer must not depend on how far this feed reached)."""
        starts, verified = self._closings
        if not closed.any() or not starts.size:
            return
        numbers, at = self._overdue(pattern, closed, starts)
        self._given_up.update(numbers[verified[at] < numbers + self.delay].tolist())

    def _bits(self, first: int, last: int) -> np.ndarray:
        """Trusted generator bits for indices ``first .. last`` (-1 where unknown: beyond the
        verified ones, or before the bits a lock learned after a contradicted one)."""
        out = np.full(last - first + 1, -1, dtype=np.int64)
        known_last = min(last, self._verified_through)
        known_first = max(first, self._bits_from)
        if self._trusted is not None and known_last >= known_first:
            indices = np.arange(known_first, known_last + 1)
            out[known_first - first : known_last - first + 1] = _generator_bits(
                self._trusted, indices
            )
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
        pattern = self._reached_pattern(number)
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
        patterns_good = int(good.sum()) // self.size
        return self._release_windows(ready, pattern, helicity, good, patterns_good)
