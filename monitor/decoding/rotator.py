"""Helicity decoding for the slow reversal schemes (spin rotator, ring kick); no LFSR.

Stream conventions (:mod:`mupnc.sim.reversal`): the DAQ's pattern number is the reversal
*interval* ``k`` (one spin state), the pattern phase the window's index in it, the
reported helicity the rotator state (+1/-1), FLAG_SETTLE marks windows inside the
ramp/settle gate.  The monitor's *pattern* is one rotator pattern
(:class:`mupnc.daq.scheme.RotatorSequence`): the ``n`` intervals ``n j .. n j + n - 1``
(quartet ``+--+``/``-++-``: n = 4; pair ``+-``: n = 2), numbered ``j`` in
:class:`mupnc.monitor.decoding.stream.DecodedWindows`; a minirun of ``N`` such patterns
spans ``n N`` reversals.

Decoding: the helicity of interval ``k`` is ``sign * relative(k)`` of the public rotator
sequence, so once two consecutive intervals across a predicted reversal report uniform
helicities that agree with one ``sign`` (the *lock*), every interval is predicted; every
later report is checked against the prediction, and windows are sorted by the
prediction, never by a raw report.  Checks per interval (counted in
:data:`mupnc.monitor.decoding.stream.ERROR_KINDS`; a bad interval cuts its whole pattern):

* ``phase_error``: phase not counting with the sequence number, or pattern sync on a
  window with phase != 0;
* ``pattern_shape``: windows of one interval report different helicities;
* ``prediction_mismatch`` / ``stuck_helicity``: the report differs from the prediction
  (one flipped interval and the first of a stuck line look the same); it is counted as
  ``stuck_helicity`` when, before a lock, it repeats the previous interval's across a
  predicted reversal, or repeats a mismatch less than one rotator pattern earlier (a
  stuck line is wrong in every pattern);
* ``rotator_mismatch``: the rotator readback (if given to :meth:`feed`) disagrees with
  the helicity (slow: readback must equal it outside the gate; kick: the sign of
  ``cos(degrees_per_turn * turns)`` must);
* ``settle_violation``: windows inside the settle gate without FLAG_SETTLE (the gate is
  ``settle_windows`` long, or learned as the longest run of leading FLAG_SETTLE windows
  seen), or (slow) a ramping readback 0 outside the flagged gate;
* ``reversal_period``: an interval lasts a different number of windows than the one
  before (a drifting reversal clock; counted once per change, not cut);
* ``unequal_windows`` (counted, not cut: asymmetries use mean yields per helicity): the
  two helicities of a pattern hold different numbers of good windows.

Windows inside the gate are never good (the gate an interval was closed with).  A window
numbered below an interval already seen is counted as a ``phase_error`` and released
undecoded (:func:`mupnc.monitor.decoding.stream.out_of_sequence`).  A pattern
still undecodable (no lock) when an interval starting ``max_pending_windows`` sequence
numbers after it closes is given up, released with helicity 0.  Like the fast decoder,
every decision is tied to an interval's closing, in order, so the output is a pure
function of the window stream, however it is cut into blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mupnc.daq.blocks import FLAG_PATTERN_SYNC, FLAG_SETTLE
from mupnc.daq.scheme import RotatorSequence, RotatorSettings, kick_analysing_power
from mupnc.monitor.decoding.stream import (
    VARIABLE_PATTERNS,
    DecodedWindows,
    StreamDecoder,
    in_order,
)


@dataclass
class _Interval:
    """What the decoder learned about one closed interval."""

    report: int  # uniform reported helicity, 0 if not uniform
    bad: bool
    gate: int  # settle-gate windows as known when the interval closed
    checked: bool = False  # readback compared with the predicted helicity


class RotatorDecoder(StreamDecoder):
    """Streaming decoder for the "slow" and "kick" schemes: :meth:`feed`, then :meth:`flush`."""

    size = VARIABLE_PATTERNS

    def __init__(
        self,
        scheme: str,
        n_channels: int,
        rotator: RotatorSettings,
        settle_windows: int | None = None,
        max_pending_windows: int = 1 << 18,
    ) -> None:
        if scheme not in ("slow", "kick"):
            raise ValueError(f"the rotator decoder handles 'slow' and 'kick', not {scheme!r}")
        super().__init__(n_channels, max_pending_windows, pattern_windows=None)
        self.scheme = scheme
        self.rotator = rotator
        self.sequence = RotatorSequence(rotator.pattern)
        self.span = self.sequence.size
        """Intervals per pattern."""
        self.settle_windows = settle_windows or 0
        self._learn_gate = settle_windows is None
        self._intervals: dict[int, _Interval] = {}  # closed, not yet released
        self._last_closed = -1
        self._previous: tuple[int, int] | None = None  # (interval, report) closed last
        self._sign: int | None = None  # the lock: helicity(k) = sign * relative(k)
        self._last_mismatch: tuple[int, int] | None = None  # (interval, report)
        self._interval_start: int | None = None  # seq at which the interval to close began
        self._interval_length: int | None = None  # windows of the last measured interval
        self._closings: list[tuple[int, bool]] = []  # last feed: (first seq, locked after)
        self._given_up: set[int] = set()  # patterns (rotator patterns) released undecoded

    @property
    def locked(self) -> bool:
        return self._sign is not None

    @property
    def lock_state(self) -> str:
        """LOCKED once the sequence's sign is known, LEARNING before."""
        return "LOCKED" if self.locked else "LEARNING"

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
        self._closings.append((int(seq[0]), self._sign is not None))
        if self._sign is not None:
            self._check_readback(
                info, p["readback"][w][(phase >= self.settle_windows) & ~settle], k
            )

    def _check_report(self, k: int, report: int) -> bool:
        """Learn or verify the sequence's sign; True if the report is wrong."""
        errors = self.state.errors
        previous, self._previous = self._previous, (k, report)
        if self._sign is None:
            if previous is None or report == 0 or previous[0] != k - 1 or k < 1:
                return False
            relative, before = (int(r) for r in self.sequence.relative(np.array([k, k - 1])))
            if relative == before:  # no reversal predicted: a stuck line would lock too
                return False
            if report * relative == previous[1] * before:
                self._sign = report * relative
                return False
            if report == previous[1]:
                errors["stuck_helicity"] += 1
            return False
        if report == 0 or report == self._predicted(k):
            return False
        last = self._last_mismatch
        stuck = last is not None and last[1] == report and k - last[0] <= self.span
        errors["stuck_helicity" if stuck else "prediction_mismatch"] += 1
        self._last_mismatch = (k, report)
        return True

    def _predicted(self, k: int) -> int:
        """Helicity of interval ``k`` from the lock (called only while locked)."""
        assert self._sign is not None, "no lock: nothing to predict from"
        return self._sign * int(self.sequence.relative(k))

    # -- release ---------------------------------------------------------------------------

    def _release(self, interval: np.ndarray, final: bool) -> DecodedWindows:
        n = interval.size
        ready = np.zeros(n, dtype=bool)
        if n:
            stray = self._pending["stray"] > 0
            pattern = interval // self.span
            complete = ((pattern < (self._last_closed + 1) // self.span) | final) & ~stray
            if self._sign is not None or final:
                ready = complete & (interval <= self._last_closed)
            self._give_up(pattern, complete)
            if self._given_up:
                ready |= complete & np.isin(pattern, list(self._given_up))
            ready = in_order(ready | stray)
        return self._decoded(ready, interval, final)

    def _give_up(self, pattern: np.ndarray, complete: np.ndarray) -> None:
        """Give up the complete patterns not yet decodable when the first interval starting
        ``max_pending_windows`` sequence numbers after them closed (locked by now or not)."""
        if not self._closings or not complete.any():
            return
        starts = np.array([start for start, _ in self._closings], dtype=np.int64)
        locked = np.array([lock for _, lock in self._closings])
        numbers, at = self._overdue(pattern, complete, starts)
        self._given_up.update(numbers[~locked[at]].tolist())

    def _decoded(self, ready: np.ndarray, interval: np.ndarray, final: bool) -> DecodedWindows:
        take = np.flatnonzero(ready)
        interval = interval[take]
        pattern = self._reached_pattern(interval // self.span)
        helicity = np.zeros(take.size, dtype=np.int8)
        good = np.zeros(take.size, dtype=bool)
        ok = np.flatnonzero(self._pending["stray"][take] == 0)
        if ok.size:
            helicity[ok], good[ok] = self._sorted(take[ok], interval[ok], final)
        patterns_good = np.unique(pattern[good]).size
        position = (interval % self.span).astype(np.int8)
        return self._release_windows(ready, pattern, helicity, good, patterns_good, position)

    def _sorted(
        self, take: np.ndarray, interval: np.ndarray, final: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Helicity and goodness of released windows in sequence (their intervals closed)."""
        p = self._pending
        helicity = np.zeros(take.size, dtype=np.int8)
        phase = p["pattern_phase"][take].astype(np.int64)
        flags = p["flags"][take].astype(np.int64)
        readback = p["readback"][take]
        span = self.span
        pattern = interval // span
        infos = {k: self._intervals.pop(k, None) for k in np.unique(interval).tolist()}
        gate = np.full(take.size, self.settle_windows)
        for k, info in infos.items():
            if info is not None:
                gate[interval == k] = info.gate
        usable = (phase >= gate) & ((flags & FLAG_SETTLE) == 0)
        bad_patterns = set()
        for k, info in infos.items():
            here = interval == k
            if self._sign is None or info is None or k // span in self._given_up:
                bad_patterns.add(k // span)
                continue
            helicity[here] = self._predicted(k)
            self._check_readback(info, readback[here & usable], k)
            if info.bad:
                bad_patterns.add(k // span)
        for j in np.unique(pattern).tolist():
            members = pattern == j
            if set(interval[members].tolist()) != set(range(span * j, span * j + span)):
                bad_patterns.add(j)
                continue
            plus = np.count_nonzero(members & usable & (helicity > 0))
            minus = np.count_nonzero(members & usable & (helicity < 0))
            truncated = final and j == pattern[-1]  # the run ended inside this pattern
            if plus != minus and j not in bad_patterns and not truncated:
                self.state.errors["unequal_windows"] += 1
            if plus == 0 or minus == 0:
                bad_patterns.add(j)
        self._given_up.difference_update(pattern.tolist())
        return helicity, usable & (helicity != 0) & ~np.isin(pattern, list(bad_patterns))

    def _analysing_power(self, take: np.ndarray | slice, helicity: np.ndarray) -> np.ndarray | None:
        """Kick: ``cos(degrees_per_turn * turns)`` from each window's turn readback (the
        helicity where no readback came); slow rotator: the helicity (None)."""
        if self.scheme != "kick":
            return None
        turns = self._pending["readback"][take]
        power = kick_analysing_power(turns, self.rotator.degrees_per_turn)
        return np.where(np.isfinite(turns), power, helicity.astype(np.float64))

    def _check_readback(self, info: _Interval, readback: np.ndarray, k: int) -> None:
        """Count and cut an interval whose rotator readback disagrees with its helicity."""
        if info.checked:
            return
        info.checked = True
        readback = readback[np.isfinite(readback)]
        if self.scheme == "kick":
            sign = np.sign(kick_analysing_power(readback, self.rotator.degrees_per_turn))
        else:
            sign = readback
        if (sign != self._predicted(k)).any():
            self.state.errors["rotator_mismatch"] += 1
            info.bad = True
