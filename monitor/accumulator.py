"""Helicity-sorted accumulation and running asymmetries, per minirun (pure numpy; no I/O).

A *minirun* closes after ``minirun_patterns`` good patterns (JAPAN default 9000).  Every
released window is accounted for exactly once: sorted by actual helicity into its
minirun's ``counts[helicity, channel]`` (index 0 is helicity +1, index 1 is -1), or, if
its helicity could not be decoded, into ``undecoded_counts``.  Asymmetries here are the
*measured* ones (polarization and blinding are applied by :mod:`monitor.results`).

Patterns come in two kinds:

* ``pattern_size > 0`` (fast reversal): every good pattern has that many windows, in
  phase order, with helicity = pattern polarity x pattern shape.  Per-pattern sums are
  one matrix product of the ``(patterns, size, channels)`` yield block with the window
  signs (``[1, shape, null...]``), so the cost per window-channel is a few memory passes;
* ``pattern_size == 0`` (slow rotator, ring kick): a pattern is one pair of opposite spin
  states of any length (:mod:`monitor.decoder`); sums are taken over those segments, and
  asymmetries use mean yields per helicity, so unequal +/- window numbers do not bias them.
  The null asymmetry there is that of even against odd sequence numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from monitor.asymmetry import alternate_signs, cross_ratio_asymmetry, yield_asymmetry
from monitor.decoder import DecodedWindows
from monitor.statistics import RunningStats
from sim.channel_map import ChannelMap

PLUS, MINUS = 0, 1
STATE_VERSION = 1
VARIABLE_PATTERNS = 0
"""``pattern_size`` of slow schemes: patterns are reversal pairs of variable length."""


def null_names(pattern_size: int) -> tuple[str, ...]:
    """Names of the null asymmetries accumulated for patterns of ``pattern_size``."""
    if pattern_size == VARIABLE_PATTERNS:
        return ("null_even_odd",)
    return tuple(alternate_signs(pattern_size))


@dataclass
class MinirunSums:
    """Everything one minirun contributes; all sums are cumulative within the minirun."""

    index: int
    n_channels: int
    n_null: int = 0
    counts: np.ndarray = field(init=False)  # (2, c) detector counts by helicity
    windows: np.ndarray = field(init=False)  # (2,) windows by helicity
    beam_monitor: np.ndarray = field(init=False)  # (2,) beam-monitor integrals by helicity
    undecoded_counts: np.ndarray = field(init=False)  # (c,)
    undecoded_windows: int = 0
    patterns_good: int = 0
    channel_asymmetry: RunningStats = field(init=False)  # per channel, over good patterns
    cross_ratio: RunningStats = field(init=False)  # A_FB, one column
    charge_asymmetry: RunningStats = field(init=False)  # one column
    null_asymmetry: RunningStats = field(init=False)  # (n_null * c), null-kind major
    null_cross_ratio: RunningStats = field(init=False)  # (n_null,)

    def __post_init__(self) -> None:
        self.counts = np.zeros((2, self.n_channels), dtype=np.int64)
        self.windows = np.zeros(2, dtype=np.int64)
        self.beam_monitor = np.zeros(2)
        self.undecoded_counts = np.zeros(self.n_channels, dtype=np.int64)
        self.channel_asymmetry = RunningStats.empty(self.n_channels)
        self.cross_ratio = RunningStats.empty(1)
        self.charge_asymmetry = RunningStats.empty(1)
        self.null_asymmetry = RunningStats.empty(self.n_null * self.n_channels)
        self.null_cross_ratio = RunningStats.empty(self.n_null)

    def state(self) -> dict:
        """Every field as plain JSON-able values (see :meth:`RunAccumulator.state`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RunningStats):
                value = value.state()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[f.name] = value
        return out

    @classmethod
    def from_state(cls, state: dict) -> MinirunSums:
        m = cls(int(state["index"]), int(state["n_channels"]), int(state["n_null"]))
        for f in fields(m)[3:]:  # after index, n_channels, n_null
            current = getattr(m, f.name)
            if isinstance(current, RunningStats):
                value = RunningStats.from_state(state[f.name])
                shape, expected = value.n.shape, current.n.shape
            elif isinstance(current, np.ndarray):
                value = np.array(state[f.name], dtype=current.dtype)
                shape, expected = value.shape, current.shape
            else:
                value, shape, expected = type(current)(state[f.name]), (), ()
            if shape != expected:
                raise ValueError(f"accumulator state: {f.name} has shape {shape}, not {expected}")
            setattr(m, f.name, value)
        return m


@dataclass
class _PatternSums:
    """Per good pattern: yield sums by sign column ``[1, helicity, null...]``."""

    yields: np.ndarray  # (p, c, k) sum of sign * yield
    charge: np.ndarray  # (p, k) sum of sign * beam monitor
    n_plus: np.ndarray | None  # (p, k) windows with sign +1 (column 0 unused)
    n_minus: np.ndarray | None  # (p, k) windows with sign -1 (column 0 unused)

    @property
    def balanced(self) -> bool:
        """Every sign column has as many +1 as -1 windows (fixed-size patterns)."""
        return self.n_plus is None


class RunAccumulator:
    """Consumes :class:`DecodedWindows`; keeps one :class:`MinirunSums` per minirun.

    ``pattern_size`` is the number of windows per pattern, or :data:`VARIABLE_PATTERNS`
    for slow schemes; ``minirun_patterns`` good patterns make a minirun.
    """

    def __init__(self, channel_map: ChannelMap, pattern_size: int, minirun_patterns: int = 9000):
        if minirun_patterns < 2:
            raise ValueError("a minirun needs at least 2 patterns")
        self.channel_map = channel_map
        self.pattern_size = pattern_size
        self.minirun_patterns = minirun_patterns
        self.n_channels = len(channel_map.channels)
        self.null_names = null_names(pattern_size)
        if pattern_size != VARIABLE_PATTERNS:
            alternates = np.array(list(alternate_signs(pattern_size).values()), dtype=np.float64)
            self._null_signs = alternates.T  # (size, n_null)
        self.miniruns: list[MinirunSums] = [self._new_minirun(0)]
        self._forward = channel_map.indices("forward")
        self._backward = channel_map.indices("backward")
        self.dirty: set[int] = {0}
        """Miniruns changed since the caller last cleared this set (for incremental writes)."""

    def _new_minirun(self, index: int) -> MinirunSums:
        return MinirunSums(index, self.n_channels, len(self.null_names))

    def state(self) -> dict:
        """Everything needed to continue accumulating exactly where this left off.

        Plain JSON-able values (lists, ints, floats; Python floats round-trip bit-exactly
        through ``json``), including the running moments of every minirun.
        """
        return {
            "version": STATE_VERSION,
            "channels": self.channel_map.names,
            "pattern_size": self.pattern_size,
            "minirun_patterns": self.minirun_patterns,
            "miniruns": [m.state() for m in self.miniruns],
        }

    @classmethod
    def from_state(cls, channel_map: ChannelMap, state: dict) -> RunAccumulator:
        """Restore an accumulator saved by :meth:`state`, bit-exactly.

        All restored miniruns are marked dirty, so the next (idempotent) database write
        brings every row up to date.  Raises ``ValueError`` if the state does not belong
        to this channel map or was written by another layout version.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"accumulator state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        if list(state["channels"]) != channel_map.names:
            raise ValueError("accumulator state was saved for a different channel map")
        acc = cls(channel_map, int(state["pattern_size"]), int(state["minirun_patterns"]))
        acc.miniruns = [MinirunSums.from_state(m) for m in state["miniruns"]]
        if [m.index for m in acc.miniruns] != list(range(len(acc.miniruns))) or not acc.miniruns:
            raise ValueError("accumulator state: miniruns must be numbered 0, 1, 2, ...")
        expected = (acc.n_channels, len(acc.null_names))
        if any((m.n_channels, m.n_null) != expected for m in acc.miniruns):
            raise ValueError("accumulator state: channel count differs from the channel map")
        acc.dirty = set(range(len(acc.miniruns)))
        return acc

    @property
    def good_patterns(self) -> int:
        return sum(m.patterns_good for m in self.miniruns)

    def add(self, decoded: DecodedWindows) -> None:
        n = decoded.n_windows
        if n == 0:
            return
        # good patterns released before each window's own pattern (non-decreasing: patterns
        # are released whole and in order)
        good_numbers = np.unique(decoded.pattern_number[decoded.good])
        before = self.good_patterns + np.searchsorted(good_numbers, decoded.pattern_number)
        minirun = before // self.minirun_patterns
        first, last = int(minirun[0]), int(minirun[-1])
        bounds = np.searchsorted(minirun, np.arange(first, last + 2))
        for index, start, stop in zip(
            range(first, last + 1), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True
        ):
            while len(self.miniruns) <= index:
                self.miniruns.append(self._new_minirun(len(self.miniruns)))
            self.dirty.add(index)
            self._add_to(self.miniruns[index], decoded, slice(start, stop))

    def _add_to(self, m: MinirunSums, d: DecodedWindows, part: slice) -> None:
        counts = d.counts[part].astype(np.float64)
        helicity, bcm, good = d.helicity[part], d.beam_monitor[part], d.good[part]
        # helicity sorting: one matrix product; float64 sums of integers are exact < 2**53
        sort = np.stack([helicity == 1, helicity == -1, helicity == 0]).astype(np.float64)
        totals = np.rint(sort @ counts).astype(np.int64)
        m.counts += totals[:2]
        m.undecoded_counts += totals[2]
        windows = sort.sum(axis=1).astype(np.int64)
        m.windows += windows[:2]
        m.undecoded_windows += int(windows[2])
        m.beam_monitor += sort[:2] @ bcm

        if not good.all():
            counts, helicity, bcm = counts[good], helicity[good], bcm[good]
            seq, pattern = d.seq[part][good], d.pattern_number[part][good]
        else:
            seq, pattern = d.seq[part], d.pattern_number[part]
        if helicity.size == 0:
            return
        yields = np.divide(counts, bcm[:, None], out=counts)
        if self.pattern_size == VARIABLE_PATTERNS:
            sums = self._segment_sums(yields, bcm, helicity, seq, pattern)
        else:
            sums = self._fixed_sums(yields, bcm, helicity)
        m.patterns_good += sums.yields.shape[0]
        self._merge(m, sums)

    def _fixed_sums(self, yields: np.ndarray, bcm: np.ndarray, helicity: np.ndarray):
        size = self.pattern_size
        p = helicity.size // size
        helicity = helicity.reshape(p, size)
        polarity = helicity[:, 0].astype(np.float64)  # shape[0] is +1
        shape = (helicity[0] * helicity[0, 0]).astype(np.float64)
        signs = np.column_stack([np.ones(size), shape, self._null_signs])  # (size, k)
        block = yields.reshape(p, size, self.n_channels)
        summed = np.tensordot(block, signs, axes=([1], [0]))  # (p, c, k)
        summed[:, :, 1] *= polarity[:, None]
        charge = bcm.reshape(p, size) @ signs
        charge[:, 1] *= polarity
        return _PatternSums(summed, charge, None, None)  # every sign column is balanced

    def _segment_sums(self, yields, bcm, helicity, seq, pattern) -> _PatternSums:
        starts = np.flatnonzero(np.r_[True, pattern[1:] != pattern[:-1]])
        parity = np.where(seq % 2 == 0, 1.0, -1.0)
        signs = np.column_stack([np.ones(helicity.size), helicity, parity])  # (n, k)
        summed = np.add.reduceat(yields[:, :, None] * signs[:, None, :], starts, axis=0)
        charge = np.add.reduceat(bcm[:, None] * signs, starts, axis=0)
        n_plus = np.add.reduceat((signs > 0).astype(np.float64), starts, axis=0)
        n_minus = np.add.reduceat((signs < 0).astype(np.float64), starts, axis=0)
        return _PatternSums(summed, charge, n_plus, n_minus)

    def _merge(self, m: MinirunSums, s: _PatternSums) -> None:
        """Pattern asymmetries from the sums, merged into the minirun's running stats.

        Mean yields by helicity are ``(total +- signed) / n+-``; for balanced patterns the
        asymmetry reduces to ``signed / total``.  The cross ratio needs no window numbers
        (they cancel), so it is taken from the sums directly.
        """
        total, signed = s.yields[:, :, :1], s.yields[:, :, 1:]
        total_q, signed_q = s.charge[:, :1], s.charge[:, 1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            if s.balanced:
                asym, charge = signed / total, signed_q[:, :1] / total_q
            else:
                n_plus, n_minus = s.n_plus[:, 1:], s.n_minus[:, 1:]
                asym = yield_asymmetry(
                    (total + signed) / n_plus[:, None], (total - signed) / n_minus[:, None]
                )
                q = yield_asymmetry((total_q + signed_q) / n_plus, (total_q - signed_q) / n_minus)
                charge = q[:, :1]
        p, c, k = asym.shape  # k = 1 + n_null sign columns
        columns = [asym[:, :, 0], asym[:, :, 1:].transpose(0, 2, 1).reshape(p, -1), charge]
        afb = bool(self._forward and self._backward)
        if afb:
            f_total, f_signed = total[:, self._forward].sum(1), signed[:, self._forward].sum(1)
            b_total, b_signed = total[:, self._backward].sum(1), signed[:, self._backward].sum(1)
            columns.append(
                cross_ratio_asymmetry(
                    f_total + f_signed, f_total - f_signed, b_total + b_signed, b_total - b_signed
                )
            )  # (p, k)
        stats = RunningStats.of(np.concatenate(columns, axis=1))  # one pass for all of them
        parts = stats.split([c, (k - 1) * c, 1, k if afb else 0])
        m.channel_asymmetry = m.channel_asymmetry.merge(parts[0])
        m.null_asymmetry = m.null_asymmetry.merge(parts[1])
        m.charge_asymmetry = m.charge_asymmetry.merge(parts[2])
        if afb:
            cross, null_cross = parts[3].split([1, k - 1])
            m.cross_ratio = m.cross_ratio.merge(cross)
            m.null_cross_ratio = m.null_cross_ratio.merge(null_cross)

    # -- totals over the run -------------------------------------------------------------

    def sorted_counts(self) -> np.ndarray:
        """Run totals of helicity-sorted counts, shape (2, channels)."""
        return sum((m.counts for m in self.miniruns), np.zeros((2, self.n_channels), np.int64))

    def run_stats(self, attribute: str) -> RunningStats:
        """Merged running statistics of one :class:`MinirunSums` attribute over the run."""
        stats = getattr(self.miniruns[0], attribute)
        for m in self.miniruns[1:]:
            stats = stats.merge(getattr(m, attribute))
        return stats
