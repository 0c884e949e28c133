"""Helicity-sorted accumulation and running asymmetries, per minirun (pure numpy; no I/O).

A *minirun* closes after ``minirun_patterns`` good patterns (JAPAN default 9000).  Every
released window is accounted for exactly once: sorted by actual helicity into its
minirun's ``counts[helicity, channel]`` (index 0 is helicity +1, index 1 is -1), or, if
its helicity could not be decoded, into ``undecoded_counts``.  Asymmetries here are the
*measured* ones (polarization and blinding are applied by :mod:`monitor.results`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from monitor.asymmetry import (
    pattern_charge_asymmetry,
    pattern_cross_ratio_asymmetry,
    pattern_yield_asymmetry,
)
from monitor.decoder import DecodedWindows
from monitor.statistics import RunningStats
from sim.channel_map import ChannelMap

PLUS, MINUS = 0, 1
STATE_VERSION = 1


@dataclass
class MinirunSums:
    """Everything one minirun contributes; all sums are cumulative within the minirun."""

    index: int
    n_channels: int
    counts: np.ndarray = field(init=False)  # (2, c) detector counts by helicity
    windows: np.ndarray = field(init=False)  # (2,) windows by helicity
    beam_monitor: np.ndarray = field(init=False)  # (2,) beam-monitor integrals by helicity
    undecoded_counts: np.ndarray = field(init=False)  # (c,)
    undecoded_windows: int = 0
    patterns_good: int = 0
    channel_asymmetry: RunningStats = field(init=False)  # per channel, over good patterns
    cross_ratio: RunningStats = field(init=False)  # A_FB, one column
    charge_asymmetry: RunningStats = field(init=False)  # one column

    def __post_init__(self) -> None:
        self.counts = np.zeros((2, self.n_channels), dtype=np.int64)
        self.windows = np.zeros(2, dtype=np.int64)
        self.beam_monitor = np.zeros(2)
        self.undecoded_counts = np.zeros(self.n_channels, dtype=np.int64)
        self.channel_asymmetry = RunningStats.empty(self.n_channels)
        self.cross_ratio = RunningStats.empty(1)
        self.charge_asymmetry = RunningStats.empty(1)

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
        m = cls(int(state["index"]), int(state["n_channels"]))
        for f in fields(m)[2:]:  # after index and n_channels
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


class RunAccumulator:
    """Consumes :class:`DecodedWindows`; keeps one :class:`MinirunSums` per minirun."""

    def __init__(self, channel_map: ChannelMap, pattern_size: int, minirun_patterns: int = 9000):
        if minirun_patterns < 2:
            raise ValueError("a minirun needs at least 2 patterns")
        self.channel_map = channel_map
        self.pattern_size = pattern_size
        self.minirun_patterns = minirun_patterns
        self.n_channels = len(channel_map.channels)
        self.miniruns: list[MinirunSums] = [MinirunSums(0, self.n_channels)]
        self._forward = channel_map.indices("forward")
        self._backward = channel_map.indices("backward")
        self.dirty: set[int] = {0}
        """Miniruns changed since the caller last cleared this set (for incremental writes)."""

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
        if any(m.n_channels != acc.n_channels for m in acc.miniruns):
            raise ValueError("accumulator state: channel count differs from the channel map")
        acc.dirty = set(range(len(acc.miniruns)))
        return acc

    @property
    def good_patterns(self) -> int:
        return sum(m.patterns_good for m in self.miniruns)

    def add(self, decoded: DecodedWindows) -> None:
        if decoded.n_windows == 0:
            return
        size = self.pattern_size
        new_pattern = np.ones(decoded.n_windows, dtype=bool)
        new_pattern[1:] = decoded.pattern_number[1:] != decoded.pattern_number[:-1]
        good_start = decoded.good & new_pattern
        # good patterns completed before each window's own pattern began
        before = self.good_patterns + np.cumsum(good_start) - decoded.good
        minirun = before // self.minirun_patterns
        for index in np.unique(minirun).tolist():
            while len(self.miniruns) <= index:
                self.miniruns.append(MinirunSums(len(self.miniruns), self.n_channels))
            self.dirty.add(index)
            self._add_to(self.miniruns[index], decoded, minirun == index, size)

    def _add_to(self, m: MinirunSums, d: DecodedWindows, sel: np.ndarray, size: int) -> None:
        for slot, sign in ((PLUS, 1), (MINUS, -1)):
            mask = sel & (d.helicity == sign)
            m.counts[slot] += d.counts[mask].sum(axis=0)
            m.windows[slot] += int(mask.sum())
            m.beam_monitor[slot] += float(d.beam_monitor[mask].sum())
        undecoded = sel & (d.helicity == 0)
        m.undecoded_counts += d.counts[undecoded].sum(axis=0)
        m.undecoded_windows += int(undecoded.sum())

        good = sel & d.good
        patterns = int(good.sum()) // size
        if patterns == 0:
            return
        m.patterns_good += patterns
        counts = d.counts[good].reshape(patterns, size, self.n_channels).astype(np.float64)
        bcm = d.beam_monitor[good].reshape(patterns, size)
        helicity = d.helicity[good].reshape(patterns, size)
        m.channel_asymmetry = m.channel_asymmetry.merge(
            RunningStats.of(pattern_yield_asymmetry(counts, bcm, helicity))
        )
        m.charge_asymmetry = m.charge_asymmetry.merge(
            RunningStats.of(pattern_charge_asymmetry(bcm, helicity)[:, None])
        )
        if self._forward and self._backward:
            a_fb = pattern_cross_ratio_asymmetry(
                counts[:, :, self._forward].sum(axis=2),
                counts[:, :, self._backward].sum(axis=2),
                bcm,
                helicity,
            )
            m.cross_ratio = m.cross_ratio.merge(RunningStats.of(a_fb[:, None]))

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
