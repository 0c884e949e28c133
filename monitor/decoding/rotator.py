"""Helicity decoding for the slow reversal schemes (spin rotator, ring kick); no LFSR.

Stream conventions (:mod:`mupnc.sim.reversal`): the DAQ's pattern number is the reversal
*interval* ``k`` (one spin state), the pattern phase the window's index in it, the
reported helicity the rotator state (+1/-1), FLAG_SETTLE marks windows inside the
ramp/settle gate.  The monitor's *pattern* is a pair of intervals ``(2j, 2j + 1)`` (one
of each helicity), numbered ``j`` in :class:`mupnc.monitor.decoding.fast.DecodedWindows`; a minirun
of ``N`` such patterns spans ``2N`` reversals.

Decoding: the spin alternates every interval, so once two consecutive intervals report
opposite uniform helicities (the *lock*), interval ``k`` has helicity
``h0 * (-1) ** (k - k0)``; every later report is checked against that, and windows are
sorted by the prediction, never by a raw report.  Checks per interval (counted in
:data:`mupnc.monitor.decoding.fast.ERROR_KINDS`; a bad interval cuts its whole pattern):

* ``phase_error``: phase not counting with the sequence number, or pattern sync on a
  window with phase != 0;
* ``pattern_shape``: windows of one interval report different helicities;
* ``prediction_mismatch`` / ``stuck_helicity``: the report differs from the prediction
  (one flipped interval and the first of a stuck line look the same); it is counted as
  ``stuck_helicity`` when the report repeats the previous interval's before a lock, or
  repeats a mismatch two intervals earlier (a stuck line stays wrong every other one);
* ``rotator_mismatch``: the rotator readback (if given to :meth:`feed`) disagrees with
  the helicity (slow: readback must equal it outside the gate; kick: the sign of
  ``cos(12 deg * turns)`` must);
* ``settle_violation``: windows inside the settle gate without FLAG_SETTLE (the gate is
  ``settle_windows`` long, or learned as the longest run of leading FLAG_SETTLE windows
  seen), or (slow) a ramping readback 0 outside the flagged gate;
* ``reversal_period``: an interval lasts a different number of windows than the one
  before (a drifting reversal clock; counted once per change, not cut);
* ``unequal_windows`` (counted, not cut: asymmetries use mean yields per helicity): the
  two intervals of a pattern hold different numbers of good windows.

Windows inside the gate are never good (the gate an interval was closed with).  A window
numbered below an interval already seen is counted as a ``phase_error`` and released
undecoded (:func:`mupnc.monitor.decoding.fast.out_of_sequence`).  A pattern
still undecodable (no lock) when an interval starting ``max_pending_windows`` sequence
numbers after it closes is given up, released with helicity 0.  Like the fast decoder,
every decision is tied to an interval's closing, in order, so the output is a pure
function of the window stream, however it is cut into blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.daq.blocks import FLAG_PATTERN_SYNC, FLAG_SETTLE, WindowBlock
from mupnc.monitor.analysis.accumulator import VARIABLE_PATTERNS
from mupnc.monitor.decoding.fast import (
    DecodedWindows,
    DecoderState,
    HelicityDecoder,
    count_missed,
    out_of_sequence,
)

SCHEMES = ("fast", "slow", "kick")
DEFAULT_MINIRUN_PATTERNS = 9000
"""Minirun length of the fast scheme in patterns (JAPAN's default)."""
DEFAULT_MINIRUN_PAIRS = 16
"""Minirun length of the slow schemes in patterns (interval pairs): 32 reversals, about
JAPAN's 5-minute minirun at a 10 s flip period."""
DEGREES_PER_TURN = 12.0
_FIELDS = ("seq", "pattern_number", "pattern_phase", "reported_helicity", "flags", "beam_monitor")


@dataclass
class _Interval:
    """What the decoder learned about one closed interval."""

    report: int  # uniform reported helicity, 0 if not uniform
    bad: bool
    gate: int  # settle-gate windows as known when the interval closed
    checked: bool = False  # readback compared with the predicted helicity


class RotatorDecoder:
    """Streaming decoder for the "slow" and "kick" schemes: :meth:`feed`, then :meth:`flush`."""

    size = VARIABLE_PATTERNS

    def __init__(
        self,
        scheme: str,
        n_channels: int,
        settle_windows: int | None = None,
        max_pending_windows: int = 1 << 18,
    ) -> None:
        if scheme not in ("slow", "kick"):
            raise ValueError(f"the rotator decoder handles 'slow' and 'kick', not {scheme!r}")
        self.scheme = scheme
        self.n_channels = n_channels
        self.settle_windows = settle_windows or 0
        self._learn_gate = settle_windows is None
        self.max_pending_windows = max_pending_windows
        self.state = DecoderState()
        self._pending = {name: np.empty(0) for name in (*_FIELDS, "readback", "stray")}
        self._newest = -1  # highest interval number seen
        self._released_pattern = -1  # pattern (interval pair) number of the last released
        self._pending_counts = np.empty((0, n_channels), dtype=np.int64)
        self._intervals: dict[int, _Interval] = {}  # closed, not yet released
        self._last_closed = -1
        self._previous: tuple[int, int] | None = None  # (interval, report) closed last
        self._lock: tuple[int, int] | None = None  # (interval, helicity)
        self._last_mismatch: tuple[int, int] | None = None  # (interval, report)
        self._interval_start: int | None = None  # seq at which the interval to close began
        self._interval_length: int | None = None  # windows of the last measured interval
        self._closings: list[tuple[int, bool]] = []  # last feed: (first seq, locked after)
        self._given_up: set[int] = set()  # patterns (interval pairs) released undecoded

    @property
    def locked(self) -> bool:
        return self._lock is not None

    def feed(
        self, block: WindowBlock, rotator_readback: np.ndarray | None = None
    ) -> DecodedWindows:
        """Add a block (and the rotator readback of each window, if known)."""
        count_missed(self.state, block.seq)
        self.state.windows_seen += block.n_windows
        if rotator_readback is None:
            rotator_readback = block.rotator_readback
        readback = np.asarray(rotator_readback, dtype=np.float64)
        stray, self._newest, _ = out_of_sequence(
            block.pattern_number.astype(np.int64), self._newest, 0, None
        )
        self.state.errors["phase_error"] += int(stray.sum())
        for name in _FIELDS:
            self._pending[name] = np.concatenate([self._pending[name], getattr(block, name)])
        self._pending["readback"] = np.concatenate([self._pending["readback"], readback])
        self._pending["stray"] = np.concatenate([self._pending["stray"], stray])
        self._pending_counts = np.concatenate([self._pending_counts, block.counts])
        return self._process(final=False)

    def flush(self) -> DecodedWindows:
        """End of run: close the last interval and release everything still held."""
        return self._process(final=True)

    # -- closing intervals: checks and learning -------------------------------------------

    def _process(self, final: bool) -> DecodedWindows:
        interval = self._pending["pattern_number"].astype(np.int64)
        self._closings = []
        kept = np.flatnonzero(self._pending["stray"] == 0)  # windows in sequence
        if kept.size:
            numbers = interval[kept]
            closed_upto = int(numbers[-1]) if final else int(numbers[-1]) - 1
            starts = np.flatnonzero(np.r_[True, numbers[1:] != numbers[:-1]])
            ends = np.r_[starts[1:], numbers.size]
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                k = int(numbers[start])
                if self._last_closed < k <= closed_upto:
                    following = int(kept[end]) if end < kept.size else None
                    self._close(k, kept[start:end], self._start_of(following))
            self._last_closed = max(self._last_closed, closed_upto)
        return self._release(interval, final)

    def _start_of(self, i: int | None) -> int | None:
        """Sequence number at which the interval of pending window ``i`` began."""
        if i is None:
            return None
        return int(self._pending["seq"][i]) - int(self._pending["pattern_phase"][i])

    def _close(self, k: int, w: np.ndarray, next_start: int | None) -> None:
        p, errors = self._pending, self.state.errors
        seq = p["seq"][w].astype(np.int64)
        phase = p["pattern_phase"][w].astype(np.int64)
        start = self._interval_start
        if start is None:
            start = int(seq[0] - phase[0])
        if next_start is not None:
            length = next_start - start
            if self._interval_length is not None and length != self._interval_length:
                errors["reversal_period"] += 1
            self._interval_length = length
        self._interval_start = next_start
        flags = p["flags"][w].astype(np.int64)
        reported = p["reported_helicity"][w].astype(np.int64)
        bad = False
        sync = (flags & FLAG_PATTERN_SYNC) != 0
        if (phase - phase[0] != seq - seq[0]).any() or (phase[sync] != 0).any():
            errors["phase_error"] += 1
            bad = True
        settle = (flags & FLAG_SETTLE) != 0
        leading = int(np.argmin(settle)) if not settle.all() else settle.size
        if self._learn_gate and not bad and phase[0] == 0:
            self.settle_windows = max(self.settle_windows, leading)
        in_gate = phase < self.settle_windows
        ramping = (p["readback"][w] == 0) & ~settle if self.scheme == "slow" else False
        if (in_gate & ~settle).any() or np.any(ramping):
            errors["settle_violation"] += 1
            bad = True
        report = int(reported[0]) if (reported == reported[0]).all() else 0
        if report == 0:
            errors["pattern_shape"] += 1
            bad = True
        bad |= self._check_report(k, report)
        info = self._intervals[k] = _Interval(report, bad, self.settle_windows)
        self._closings.append((int(seq[0]), self._lock is not None))
        if self._lock is not None:
            self._check_readback(
                info, p["readback"][w][(phase >= self.settle_windows) & ~settle], k
            )

    def _check_report(self, k: int, report: int) -> bool:
        """Learn or verify the alternation; True if the report is wrong."""
        errors = self.state.errors
        previous, self._previous = self._previous, (k, report)
        if self._lock is None:
            if previous is None or report == 0 or previous[0] != k - 1:
                return False
            if report == -previous[1]:
                self._lock = (k, report)
                return False
            if report == previous[1]:
                errors["stuck_helicity"] += 1
            return False
        if report == 0 or report == self._predicted(k):
            return False
        stuck = self._last_mismatch == (k - 2, report)
        errors["stuck_helicity" if stuck else "prediction_mismatch"] += 1
        self._last_mismatch = (k, report)
        return True

    def _predicted(self, k: int) -> int:
        k0, h0 = self._lock
        return h0 if (k - k0) % 2 == 0 else -h0

    # -- release ---------------------------------------------------------------------------

    def _release(self, interval: np.ndarray, final: bool) -> DecodedWindows:
        n = interval.size
        ready = np.zeros(n, dtype=bool)
        if n:
            stray = self._pending["stray"] > 0
            pair = interval // 2
            complete = ((pair < (self._last_closed + 1) // 2) | final) & ~stray
            if self._lock is not None or final:
                ready = complete & (interval <= self._last_closed)
            self._give_up(pair, complete)
            if self._given_up:
                ready |= complete & np.isin(pair, list(self._given_up))
            ready |= stray
            blocked = np.flatnonzero(~ready)
            if blocked.size:
                ready[blocked[0] :] = False
        take = np.flatnonzero(ready)
        out = self._decoded(take, interval[take], final)
        keep = ~ready
        for name in self._pending:
            self._pending[name] = self._pending[name][keep]
        self._pending_counts = self._pending_counts[keep]
        return out

    def _give_up(self, pair: np.ndarray, complete: np.ndarray) -> None:
        """Give up the complete patterns not yet decodable when the first interval starting
        ``max_pending_windows`` sequence numbers after them closed (locked by now or not)."""
        if not self._closings or not complete.any():
            return
        starts = np.array([start for start, _ in self._closings], dtype=np.int64)
        locked = np.array([lock for _, lock in self._closings])
        numbers, first = np.unique(pair[complete], return_index=True)
        seq = self._pending["seq"][np.flatnonzero(complete)[first]].astype(np.int64)
        at = np.searchsorted(starts, seq + self.max_pending_windows)
        late = at < starts.size
        self._given_up.update(numbers[late][~locked[at[late]]].tolist())

    def _decoded(self, take: np.ndarray, interval: np.ndarray, final: bool) -> DecodedWindows:
        p = self._pending
        # out-of-sequence windows go under the pattern number reached so far
        pattern = np.maximum.accumulate(np.r_[self._released_pattern, interval // 2])[1:]
        helicity = np.zeros(take.size, dtype=np.int8)
        good = np.zeros(take.size, dtype=bool)
        ok = np.flatnonzero(p["stray"][take] == 0)
        if ok.size:
            helicity[ok], good[ok] = self._sorted(take[ok], interval[ok], final)
        if take.size:
            self.state.patterns_good += np.unique(pattern[good]).size
            self.state.windows_undecoded += int(np.count_nonzero(helicity == 0))
            self.state.windows_released += int(take.size)
            self._released_pattern = int(pattern[-1])
        return DecodedWindows(
            seq=p["seq"][take].astype(np.int64),
            pattern_number=pattern,
            helicity=helicity,
            good=good,
            beam_monitor=p["beam_monitor"][take],
            counts=self._pending_counts[take],
        )

    def _sorted(
        self, take: np.ndarray, interval: np.ndarray, final: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Helicity and goodness of released windows in sequence (their intervals closed)."""
        p = self._pending
        helicity = np.zeros(take.size, dtype=np.int8)
        phase = p["pattern_phase"][take].astype(np.int64)
        flags = p["flags"][take].astype(np.int64)
        readback = p["readback"][take]
        pair = interval // 2
        infos = {k: self._intervals.pop(k, None) for k in np.unique(interval).tolist()}
        gate = np.full(take.size, self.settle_windows)
        for k, info in infos.items():
            if info is not None:
                gate[interval == k] = info.gate
        usable = (phase >= gate) & ((flags & FLAG_SETTLE) == 0)
        bad_pairs = set()
        for k, info in infos.items():
            here = interval == k
            if self._lock is None or info is None or k // 2 in self._given_up:
                bad_pairs.add(k // 2)
                continue
            helicity[here] = self._predicted(k)
            self._check_readback(info, readback[here & usable], k)
            if info.bad:
                bad_pairs.add(k // 2)
        for j in np.unique(pair).tolist():
            members = pair == j
            if set(interval[members].tolist()) != {2 * j, 2 * j + 1}:
                bad_pairs.add(j)
                continue
            plus = np.count_nonzero(members & usable & (helicity > 0))
            minus = np.count_nonzero(members & usable & (helicity < 0))
            truncated = final and j == pair[-1]  # the run ended inside this pattern
            if plus != minus and j not in bad_pairs and not truncated:
                self.state.errors["unequal_windows"] += 1
            if plus == 0 or minus == 0:
                bad_pairs.add(j)
        self._given_up.difference_update(pair.tolist())
        return helicity, usable & (helicity != 0) & ~np.isin(pair, list(bad_pairs))

    def _check_readback(self, info: _Interval, readback: np.ndarray, k: int) -> None:
        """Count and cut an interval whose rotator readback disagrees with its helicity."""
        if info.checked:
            return
        info.checked = True
        readback = readback[np.isfinite(readback)]
        if self.scheme == "kick":
            sign = np.sign(np.cos(np.radians(DEGREES_PER_TURN * readback)))
        else:
            sign = readback
        if (sign != self._predicted(k)).any():
            self.state.errors["rotator_mismatch"] += 1
            info.bad = True


def make_decoder(
    scheme: str,
    pattern: str,
    delay_patterns: int,
    n_channels: int,
    settle_windows: int | None = None,
) -> HelicityDecoder | RotatorDecoder:
    """The decoder for a reversal scheme: LFSR patterns (fast) or rotator intervals."""
    if scheme == "fast":
        return HelicityDecoder(pattern, delay_patterns, n_channels)
    if scheme in ("slow", "kick"):
        return RotatorDecoder(scheme, n_channels, settle_windows)
    raise ValueError(f"unknown reversal scheme {scheme!r} (known: {', '.join(SCHEMES)})")


def minirun_length(scheme: str, requested: int | None = None) -> int:
    """Patterns per minirun: ``requested``, else the scheme's default (patterns for the fast
    scheme, interval pairs for the slow ones)."""
    if requested is not None:
        return requested
    return DEFAULT_MINIRUN_PATTERNS if scheme == "fast" else DEFAULT_MINIRUN_PAIRS


def settle_gate_windows(ramp_time: float, settle_time: float, window_rate: float) -> int:
    """Windows that start inside a ramp + settle gate (s): ``settle_windows`` of a run."""
    return math.ceil((ramp_time + settle_time) * window_rate)
