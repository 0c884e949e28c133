"""Helicity-sorted accumulation and running asymmetries, per minirun (pure numpy; no I/O).

A *minirun* closes after ``minirun_patterns`` good patterns (JAPAN default 9000).  Every
released window is accounted for exactly once: sorted by actual helicity into its
minirun's ``counts[helicity, channel]`` (index 0 is helicity +1, index 1 is -1), or, if
its helicity could not be decoded, into ``undecoded_counts``.  Asymmetries here are the
*measured* ones (polarization and blinding are applied by :mod:`mupnc.monitor.analysis.results`).

**Chunk invariance**: everything accumulated is a pure function of the stream of released
windows, to the last bit, however it is cut into blocks (live 20 Hz blocks, a replay's
coalesced blocks, a whole recording at once).  Integer sums are exact; beam-monitor
integrals are summed exactly in fixed point (:data:`BEAM_MONITOR_FRACTION_BITS`); each
pattern's values come from that pattern's windows alone, by elementwise operations in a
fixed order (no BLAS, no ``sum`` whose order numpy chooses); and the per-pattern values
enter the minirun's :class:`mupnc.monitor.analysis.statistics.SequentialMoments` in pattern order.

Patterns come in two kinds:

* ``pattern_size > 0`` (fast reversal): every good pattern has that many windows, in
  phase order, with helicity = pattern polarity x pattern shape.  Every sign column
  (``[1, shape, null...]``) is a Walsh function, so all per-pattern signed yield sums come
  from one fast Walsh-Hadamard transform over the pattern's windows (log2(size) passes);
* ``pattern_size == 0`` (slow rotator, ring kick): a pattern is one rotator pattern of
  ``rotator_span`` reversal intervals of any length (:mod:`mupnc.monitor.decoding.rotator`:
  quartets ``+--+``/``-++-``, or pairs ``+-``); sums are taken over those segments, and
  asymmetries use mean yields per helicity, so unequal +/- window numbers do not bias them.
  The null asymmetries there are ``null_even_odd`` (even against odd sequence numbers) and,
  for quartets, ``null_half`` (the first two intervals against the last two: a linear
  drift, which the quartet's asymmetry cancels, shows up in it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.helicity import PATTERN_SHAPES
from mupnc.monitor.analysis.asymmetry import alternate_signs, cross_ratio_asymmetry, yield_asymmetry
from mupnc.monitor.analysis.statistics import RunningStats, SequentialMoments, Workspace
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder
from mupnc.monitor.decoding.stream import VARIABLE_PATTERNS, DecodedWindows

PLUS, MINUS = 0, 1
STATE_VERSION = 4
"""Layout of :meth:`RunAccumulator.state`; version 1 (Welford merges per block), 2 (no
good-pattern sums, no per-pattern combined columns) and 3 (no good-pattern sums by null
sign) are refused."""
BEAM_MONITOR_FRACTION_BITS = 32
"""Beam-monitor integrals are summed exactly as integers of 2**-32 muons."""
SLICE_VALUES = 1 << 17
"""Window-channel values :meth:`RunAccumulator.add` works on at a time (about 1 MB)."""


def null_names(pattern_size: int, rotator_span: int = 2) -> tuple[str, ...]:
    """Names of the null asymmetries accumulated for patterns of ``pattern_size`` windows
    (:data:`VARIABLE_PATTERNS`: rotator patterns of ``rotator_span`` intervals)."""
    if pattern_size == VARIABLE_PATTERNS:
        return ("null_even_odd", "null_half") if rotator_span > 2 else ("null_even_odd",)
    return tuple(alternate_signs(pattern_size))


@dataclass
class MinirunSums:
    """Everything one minirun contributes; all sums are cumulative within the minirun.

    The per-pattern values (asymmetry per channel, null asymmetries per kind and channel,
    charge asymmetry, and the combined asymmetry with its nulls) are the columns of one
    :class:`SequentialMoments`, read back as :class:`RunningStats` by the properties
    ``channel_asymmetry``, ``null_asymmetry`` (null-kind major), ``charge_asymmetry``,
    ``combined`` and ``null_combined``.  *Combined* is formed per pattern, so noise common
    to the channels (the beam-monitor normalisation) enters its spread: for A_FB the cross
    ratio of the summed forward and backward yields, for A_LR the yield asymmetry of the
    summed scatter yields (Poisson-optimal weights, the channels' counts).

    ``good_counts``, ``good_windows`` and ``good_beam_monitor_fixed`` sum the windows of good
    patterns only, by helicity: the input of the counting estimator
    (:mod:`mupnc.monitor.analysis.results`); ``good_null_counts``, ``good_null_windows``
    and ``good_null_beam_monitor_fixed`` sum them by the sign of each null kind instead
    (its counting null asymmetries); ``good_analysing_fixed`` sums their
    ``analysing_power`` (``P_L / P``), from which the results take the analysing power.
    """

    index: int
    n_channels: int
    n_null: int = 0
    afb: bool = False
    counts: np.ndarray = field(init=False)  # (2, c) detector counts by helicity
    windows: np.ndarray = field(init=False)  # (2,) windows by helicity
    beam_monitor_fixed: list[int] = field(init=False)  # by helicity, 2**-32 muons
    undecoded_counts: np.ndarray = field(init=False)  # (c,)
    undecoded_windows: int = 0
    good_counts: np.ndarray = field(init=False)  # (2, c) counts of good patterns by helicity
    good_windows: np.ndarray = field(init=False)  # (2,) windows of good patterns by helicity
    good_beam_monitor_fixed: list[int] = field(init=False)  # by helicity, 2**-32 muons
    good_analysing_fixed: list[int] = field(init=False)  # sum of P_L / P by helicity, 2**-32
    good_null_counts: np.ndarray = field(init=False)  # (k, 2, c) counts by null sign +/-
    good_null_windows: np.ndarray = field(init=False)  # (k, 2) windows by null sign
    good_null_beam_monitor_fixed: list[int] = field(init=False)  # 2k: by kind, then sign
    patterns_good: int = 0
    moments: SequentialMoments = field(init=False)  # per-pattern values, see above

    def __post_init__(self) -> None:
        self.counts = np.zeros((2, self.n_channels), dtype=np.int64)
        self.windows = np.zeros(2, dtype=np.int64)
        self.beam_monitor_fixed = [0, 0]
        self.undecoded_counts = np.zeros(self.n_channels, dtype=np.int64)
        self.good_counts = np.zeros((2, self.n_channels), dtype=np.int64)
        self.good_windows = np.zeros(2, dtype=np.int64)
        self.good_beam_monitor_fixed = [0, 0]
        self.good_analysing_fixed = [0, 0]
        self.good_null_counts = np.zeros((self.n_null, 2, self.n_channels), dtype=np.int64)
        self.good_null_windows = np.zeros((self.n_null, 2), dtype=np.int64)
        self.good_null_beam_monitor_fixed = [0] * (2 * self.n_null)
        self.moments = SequentialMoments.empty(sum(self.widths))

    @property
    def widths(self) -> list[int]:
        """Column widths: channel, null (kinds x channels), charge, combined + nulls."""
        c, k = self.n_channels, self.n_null
        return [c, k * c, 1, 1 + k]

    @property
    def beam_monitor(self) -> np.ndarray:
        """(2,) beam-monitor integrals by helicity (muons)."""
        return _muons(self.beam_monitor_fixed)

    @property
    def good_beam_monitor(self) -> np.ndarray:
        """(2,) beam-monitor integrals of the good patterns by helicity (muons)."""
        return _muons(self.good_beam_monitor_fixed)

    @property
    def good_null_beam_monitor(self) -> np.ndarray:
        """(k, 2) beam-monitor integrals of the good patterns by null kind and sign (muons)."""
        return _muons(self.good_null_beam_monitor_fixed).reshape(self.n_null, 2)

    @property
    def good_analysing_power(self) -> np.ndarray:
        """(2,) sums of ``P_L / P`` over the good windows by helicity."""
        return _muons(self.good_analysing_fixed)

    @cached_property
    def pattern_stats(self) -> RunningStats:
        """All per-pattern columns as :class:`RunningStats` (cached until the next change)."""
        return self.moments.stats()

    def add_patterns(self, values: np.ndarray, work: Workspace | None = None) -> None:
        """Append per-pattern values, ``(patterns, columns)``, in pattern order."""
        self.moments.add(values, work)
        self.patterns_good += values.shape[0]
        self.__dict__.pop("pattern_stats", None)

    def _parts(self) -> list[RunningStats]:
        return self.pattern_stats.split(self.widths)

    @property
    def channel_asymmetry(self) -> RunningStats:
        return self._parts()[0]

    @property
    def null_asymmetry(self) -> RunningStats:
        return self._parts()[1]

    @property
    def charge_asymmetry(self) -> RunningStats:
        return self._parts()[2]

    @property
    def combined(self) -> RunningStats:
        return self._parts()[3].split([1])[0]

    @property
    def null_combined(self) -> RunningStats:
        return self._parts()[3].split([1, self.n_null])[1]

    def state(self) -> dict:
        """Every field as plain JSON-able values (see :meth:`RunAccumulator.state`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SequentialMoments):
                value = value.state()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[f.name] = value
        return out

    @classmethod
    def from_state(cls, state: dict) -> MinirunSums:
        m = cls(int(state["index"]), int(state["n_channels"]), int(state["n_null"]), state["afb"])
        for f in fields(m)[4:]:  # after index, n_channels, n_null, afb
            current = getattr(m, f.name)
            value: object  # of the field's own type
            if isinstance(current, SequentialMoments):
                value = SequentialMoments.from_state(state[f.name])
                shape, expected = value.n.shape, current.n.shape
            elif isinstance(current, np.ndarray):
                value = np.array(state[f.name], dtype=current.dtype)
                shape, expected = value.shape, current.shape
            elif isinstance(current, list):
                value = [int(v) for v in state[f.name]]
                shape, expected = (len(value),), (len(current),)
            else:
                value, shape, expected = type(current)(state[f.name]), (), ()
            if shape != expected:
                raise ValueError(f"accumulator state: {f.name} has shape {shape}, not {expected}")
            setattr(m, f.name, value)
        return m


def _muons(fixed: list[int]) -> np.ndarray:
    """Sums kept in fixed point (:func:`fixed_beam_monitor`) as floats."""
    scale = 1 << BEAM_MONITOR_FRACTION_BITS
    return np.array([value / scale for value in fixed])


def walsh_rows(signs: np.ndarray) -> list[int]:
    """Row of the (Sylvester-ordered) Walsh-Hadamard matrix equal to each sign column.

    Row ``u`` has sign ``(-1) ** popcount(u & w)`` at window ``w``; :func:`walsh_transform`
    gives the signed sum of every row at once."""
    size = signs.shape[0]
    if size & (size - 1):
        raise ValueError(f"patterns of {size} windows have no Walsh transform")
    w = np.arange(size)
    hadamard = 1 - 2 * (np.bitwise_count(w[:, None] & w[None, :]).astype(np.int64) % 2)
    rows = []
    for column in signs.T:
        match = np.flatnonzero((hadamard == column).all(axis=1))
        if not match.size:
            raise ValueError(f"sign column {column.tolist()} is not a Walsh function")
        rows.append(int(match[0]))
    return rows


def walsh_transform(x: np.ndarray, work: Workspace | None = None) -> np.ndarray:
    """Fast Walsh-Hadamard transform of ``x`` (patterns, size, ...) along axis 1.

    Element ``[p, u]`` is the sum over windows ``w`` of ``(-1) ** popcount(u & w) x[p, w]``,
    from butterflies: elementwise, in a fixed order, each pattern on its own.  With
    ``work``, the stages alternate between two of its buffers (the result is one of them)."""
    p, size = x.shape[:2]
    out, h = np.ascontiguousarray(x), 1
    while h < size:  # butterflies of windows h apart, as 2-d views (fast to iterate)
        v = out.reshape(p * size // (2 * h), 2, -1)
        name = "walsh_a" if h.bit_length() % 2 else "walsh_b"
        new = np.empty_like(v) if work is None else work.take(name, v.shape)
        np.add(v[:, 0], v[:, 1], out=new[:, 0])
        np.subtract(v[:, 0], v[:, 1], out=new[:, 1])
        out, h = new.reshape(x.shape), 2 * h
    return out


def last_along(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum along ``axis``, strictly left to right (see
    :func:`mupnc.monitor.analysis.statistics.in_order`)."""
    return np.take(np.add.accumulate(x, axis=axis), -1, axis=axis)


def segment_sums(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of the consecutive row segments of ``x`` beginning at ``starts``, each left to
    right (one call per segment: segments are slow-scheme patterns, seconds long)."""
    ends = [*starts[1:].tolist(), x.shape[0]]
    return np.stack([last_along(x[a:b], 0) for a, b in zip(starts.tolist(), ends, strict=True)])


def fixed_beam_monitor(bcm: np.ndarray, masks: list[np.ndarray]) -> list[int]:
    """Exact sums of ``bcm`` over each mask, as integers of 2**-BEAM_MONITOR_FRACTION_BITS
    (each value rounded to that grid; non-finite values are left out)."""
    whole = np.floor(bcm)
    fraction = np.rint((bcm - whole) * (1 << BEAM_MONITOR_FRACTION_BITS))
    finite = np.isfinite(fraction)
    whole = np.where(finite, whole, 0).astype(np.int64)
    fraction = np.where(finite, fraction, 0).astype(np.int64)
    return [
        (int(whole[m].sum()) << BEAM_MONITOR_FRACTION_BITS) + int(fraction[m].sum()) for m in masks
    ]


@dataclass
class _PatternSums:
    """Per good pattern: yield sums; ``signed`` by sign column ``[helicity, null...]``."""

    total: np.ndarray  # (p, c) sum of yields
    signed: list[np.ndarray]  # k x (p, c) sum of sign * yield
    total_q: np.ndarray  # (p,) sum of beam monitor
    signed_q: list[np.ndarray]  # k x (p,) sum of sign * beam monitor
    # (p, k) windows with sign +1 and with sign -1; None if balanced (every sign column has
    # as many +1 as -1 windows: fixed-size patterns)
    windows: tuple[np.ndarray, np.ndarray] | None


class RunAccumulator:
    """Consumes :class:`DecodedWindows`; keeps one :class:`MinirunSums` per minirun.

    ``pattern_size`` is the number of windows per pattern, or :data:`VARIABLE_PATTERNS`
    for slow schemes, whose patterns hold ``rotator_span`` reversal intervals;
    ``minirun_patterns`` good patterns make a minirun.
    """

    def __init__(
        self,
        channel_map: ChannelMap,
        pattern_size: int,
        minirun_patterns: int = 9000,
        rotator_span: int = 2,
    ):
        if minirun_patterns < 2:
            raise ValueError("a minirun needs at least 2 patterns")
        self.channel_map = channel_map
        self.pattern_size = pattern_size
        self.minirun_patterns = minirun_patterns
        self.rotator_span = rotator_span
        self.n_channels = len(channel_map.channels)
        self.null_names = null_names(pattern_size, rotator_span)
        if pattern_size != VARIABLE_PATTERNS:
            shape = _shape_of(pattern_size)
            alternates = list(alternate_signs(pattern_size).values())
            self._walsh = walsh_rows(np.column_stack([shape, *alternates]))
        self._forward = channel_map.indices("forward")
        self._backward = channel_map.indices("backward")
        self._scatter = channel_map.indices("scatter")
        self.afb = bool(self._forward and self._backward)
        self.miniruns: list[MinirunSums] = [self._new_minirun(0)]
        self.dirty: set[int] = {0}
        """Miniruns changed since the caller last cleared this set (for incremental writes)."""
        self._work = Workspace()

    @classmethod
    def for_decoder(
        cls,
        channel_map: ChannelMap,
        decoder: HelicityDecoder | RotatorDecoder,
        minirun_patterns: int,
    ) -> RunAccumulator:
        """An accumulator for the patterns ``decoder`` releases."""
        span = decoder.span if isinstance(decoder, RotatorDecoder) else 2
        return cls(channel_map, decoder.size, minirun_patterns, span)

    def _new_minirun(self, index: int) -> MinirunSums:
        return MinirunSums(index, self.n_channels, len(self.null_names), self.afb)

    def state(self) -> dict:
        """Everything needed to continue accumulating exactly where this left off.

        Plain JSON-able values (lists, ints, floats; Python floats round-trip bit-exactly
        through ``json``), including the running moments of every minirun.
        """
        return {
            "version": STATE_VERSION,
            "channels": self.channel_map.names,
            "pattern_size": self.pattern_size,
            "rotator_span": self.rotator_span,
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
                f"accumulator state version {state.get('version')!r} is not {STATE_VERSION} "
                "(saved by another monitor version; reanalyze the run from its recording)"
            )
        if list(state["channels"]) != channel_map.names:
            raise ValueError("accumulator state was saved for a different channel map")
        acc = cls(
            channel_map,
            int(state["pattern_size"]),
            int(state["minirun_patterns"]),
            int(state.get("rotator_span", 2)),  # saved before rotator quartets: pairs
        )
        acc.miniruns = [MinirunSums.from_state(m) for m in state["miniruns"]]
        if [m.index for m in acc.miniruns] != list(range(len(acc.miniruns))) or not acc.miniruns:
            raise ValueError("accumulator state: miniruns must be numbered 0, 1, 2, ...")
        expected = (acc.n_channels, len(acc.null_names), acc.afb)
        if any((m.n_channels, m.n_null, m.afb) != expected for m in acc.miniruns):
            raise ValueError("accumulator state: channel layout differs from the channel map")
        acc.dirty = set(range(len(acc.miniruns)))
        return acc

    @property
    def good_patterns(self) -> int:
        return sum(m.patterns_good for m in self.miniruns)

    def add(self, decoded: DecodedWindows) -> None:
        """Accumulate released windows (in order, any number: the result does not depend on
        how the stream is cut; big blocks are worked through in cache-sized slices)."""
        n = decoded.n_windows
        if n == 0:
            return
        # good patterns released before each window's own pattern (non-decreasing: patterns
        # are released whole and in order)
        pattern = decoded.pattern_number
        good_numbers = np.unique(pattern[decoded.good])
        before = self.good_patterns + np.searchsorted(good_numbers, pattern)
        minirun = before // self.minirun_patterns
        first, last = int(minirun[0]), int(minirun[-1])
        bounds = np.searchsorted(minirun, np.arange(first, last + 2))
        starts = np.flatnonzero(np.r_[True, pattern[1:] != pattern[:-1]])  # of patterns
        step = max(1, SLICE_VALUES // self.n_channels)
        for index, start, stop in zip(
            range(first, last + 1), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True
        ):
            while len(self.miniruns) <= index:
                self.miniruns.append(self._new_minirun(len(self.miniruns)))
            self.dirty.add(index)
            at = np.searchsorted(starts, np.arange(start + step, stop, step))
            cuts = starts[at[at < starts.size]]
            edges = np.unique(np.r_[start, cuts[cuts < stop], stop]).tolist()
            for a, b in itertools.pairwise(edges):  # slices end on pattern boundaries
                self._add_to(self.miniruns[index], decoded, slice(a, b))

    def _add_to(self, m: MinirunSums, d: DecodedWindows, part: slice) -> None:
        counts = self._work.take("counts", (part.stop - part.start, self.n_channels))
        np.copyto(counts, d.counts[part])
        helicity, bcm, good = d.helicity[part], d.beam_monitor[part], d.good[part]
        # helicity sorting: one matrix product; float64 sums of integers are exact < 2**53
        masks = [helicity == 1, helicity == -1, helicity == 0]
        sort = np.stack(masks).astype(np.float64)
        totals = np.rint(sort @ counts).astype(np.int64)
        m.counts += totals[:2]
        m.undecoded_counts += totals[2]
        windows = np.array([np.count_nonzero(mask) for mask in masks], dtype=np.int64)
        m.windows += windows[:2]
        m.undecoded_windows += int(windows[2])
        fixed = fixed_beam_monitor(bcm, masks[:2])
        m.beam_monitor_fixed = [a + b for a, b in zip(m.beam_monitor_fixed, fixed, strict=True)]

        power = d.signed_polarization()[part]
        position = None if d.pattern_position is None else d.pattern_position[part]
        seq, pattern = d.seq[part], d.pattern_number[part]
        if not good.all():
            counts, helicity, bcm, power = counts[good], helicity[good], bcm[good], power[good]
            seq, pattern = seq[good], pattern[good]
            position = None if position is None else position[good]
        if helicity.size == 0:
            return
        by_helicity = [helicity == 1, helicity == -1]
        m.good_counts += np.rint(np.stack(by_helicity).astype(np.float64) @ counts).astype(np.int64)
        m.good_windows += [np.count_nonzero(mask) for mask in by_helicity]
        fixed = fixed_beam_monitor(bcm, by_helicity)
        m.good_beam_monitor_fixed = [
            a + b for a, b in zip(m.good_beam_monitor_fixed, fixed, strict=True)
        ]
        fixed = fixed_beam_monitor(power, by_helicity)
        m.good_analysing_fixed = [a + b for a, b in zip(m.good_analysing_fixed, fixed, strict=True)]
        null_signs = self._null_signs(seq, position)  # (k, n)
        by_sign = [mask for signs in null_signs for mask in (signs > 0, signs < 0)]
        if by_sign:
            sorted_counts = np.rint(np.stack(by_sign).astype(np.float64) @ counts)
            m.good_null_counts += sorted_counts.astype(np.int64).reshape(m.good_null_counts.shape)
            m.good_null_windows += np.array([np.count_nonzero(s) for s in by_sign]).reshape(-1, 2)
            fixed = fixed_beam_monitor(bcm, by_sign)
            m.good_null_beam_monitor_fixed = [
                a + b for a, b in zip(m.good_null_beam_monitor_fixed, fixed, strict=True)
            ]
        yields = np.divide(counts, bcm[:, None], out=counts)
        if self.pattern_size == VARIABLE_PATTERNS:
            sums = self._segment_sums(yields, bcm, helicity, pattern, null_signs)
        else:
            sums = self._fixed_sums(yields, bcm, helicity)
        m.add_patterns(self._pattern_values(sums), self._work)

    def _fixed_sums(self, yields: np.ndarray, bcm: np.ndarray, helicity: np.ndarray):
        size = self.pattern_size
        p = helicity.size // size
        polarity = helicity[::size].astype(np.float64)  # the shape's first window is +1
        walsh = walsh_transform(yields.reshape(p, size, self.n_channels), self._work)
        walsh_q = walsh_transform(bcm.reshape(p, size, 1))[:, :, 0]
        helicity_row = self._walsh[0]
        walsh[:, helicity_row] *= polarity[:, None]
        walsh_q[:, helicity_row] *= polarity
        signed = [walsh[:, r] for r in self._walsh]  # [helicity, null...]
        signed_q = [walsh_q[:, r] for r in self._walsh]
        return _PatternSums(walsh[:, 0], signed, walsh_q[:, 0], signed_q, None)

    def _null_signs(self, seq: np.ndarray, position: np.ndarray | None) -> np.ndarray:
        """Sign (+1/-1) of each null kind at each good window, ``(k, n)``: fixed patterns
        by the window's phase (good windows come in whole patterns, in order); rotator
        patterns ``null_even_odd`` by the sequence number, ``null_half`` (quartets: + in
        the first two intervals) by the window's pattern position."""
        if self.pattern_size != VARIABLE_PATTERNS:
            phase = np.arange(seq.size) % self.pattern_size
            alternates = alternate_signs(self.pattern_size)
            return np.array([alternates[name][phase] for name in self.null_names], np.float64)
        rows = [np.where(seq % 2 == 0, 1.0, -1.0)]
        if len(self.null_names) > 1:
            if position is None:
                raise ValueError("rotator quartets need each window's pattern position")
            rows.append(np.where(position < self.rotator_span // 2, 1.0, -1.0))
        return np.array(rows)

    def _segment_sums(self, yields, bcm, helicity, pattern, null_signs) -> _PatternSums:
        """Sums over rotator patterns; sign columns ``[1, helicity, null...]``."""
        starts = np.flatnonzero(np.r_[True, pattern[1:] != pattern[:-1]])
        signs = np.column_stack([np.ones(helicity.size), helicity, *null_signs])  # (n, k + 1)
        summed = segment_sums(signs[:, :, None] * yields[:, None, :], starts)  # (p, k + 1, c)
        charge = segment_sums(bcm[:, None] * signs, starts)  # (p, k + 1)
        n_plus = np.add.reduceat((signs[:, 1:] > 0).astype(np.int64), starts, axis=0)
        n_minus = np.add.reduceat((signs[:, 1:] < 0).astype(np.int64), starts, axis=0)
        k = signs.shape[1]
        return _PatternSums(
            summed[:, 0],
            [summed[:, i] for i in range(1, k)],
            charge[:, 0],
            [charge[:, i] for i in range(1, k)],
            (n_plus, n_minus),
        )

    def _pattern_values(self, s: _PatternSums) -> np.ndarray:
        """Per-pattern asymmetries, ``(p, columns)`` in the order of :attr:`MinirunSums.widths`
        (channels, then nulls kind-major, charge, cross ratio and its nulls).

        Mean yields by helicity are ``(total +- signed) / n+-``; for balanced patterns the
        asymmetry reduces to ``signed / total``.  The cross ratio needs no window numbers
        (they cancel), so it is taken from the sums directly.
        """
        p, c = s.total.shape
        k = len(s.signed)
        out = self._work.take("values", (p, self.miniruns[0].moments.columns))
        with np.errstate(invalid="ignore", divide="ignore"):
            for i, signed in enumerate(s.signed):
                asym = out[:, i * c : (i + 1) * c]
                if s.windows is None:  # balanced
                    np.divide(signed, s.total, out=asym)
                else:
                    n_plus, n_minus = s.windows
                    plus = (s.total + signed) / n_plus[:, i, None]
                    asym[:] = yield_asymmetry(plus, (s.total - signed) / n_minus[:, i, None])
            if s.windows is None:
                np.divide(s.signed_q[0], s.total_q, out=out[:, k * c])
            else:
                n_plus, n_minus = s.windows
                q_plus = (s.total_q + s.signed_q[0]) / n_plus[:, 0]
                out[:, k * c] = yield_asymmetry(q_plus, (s.total_q - s.signed_q[0]) / n_minus[:, 0])
        if self.afb:
            f_total = last_along(s.total[:, self._forward], 1)
            b_total = last_along(s.total[:, self._backward], 1)
            for i, signed in enumerate(s.signed):
                f_signed = last_along(signed[:, self._forward], 1)
                b_signed = last_along(signed[:, self._backward], 1)
                out[:, k * c + 1 + i] = cross_ratio_asymmetry(
                    f_total + f_signed, f_total - f_signed, b_total + b_signed, b_total - b_signed
                )
        elif not self._scatter:
            out[:, k * c + 1 :] = np.nan
        else:
            total = last_along(s.total[:, self._scatter], 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                for i, signed in enumerate(s.signed):
                    summed = last_along(signed[:, self._scatter], 1)
                    if s.windows is None:  # balanced
                        out[:, k * c + 1 + i] = summed / total
                    else:
                        n_plus, n_minus = s.windows
                        out[:, k * c + 1 + i] = yield_asymmetry(
                            (total + summed) / n_plus[:, i], (total - summed) / n_minus[:, i]
                        )
        return out

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


def _shape_of(size: int) -> np.ndarray:
    """The shape (relative helicity of each window) of the pattern with ``size`` windows."""
    for shape in PATTERN_SHAPES.values():
        if shape.size == size:
            return shape.astype(np.int64)
    raise ValueError(f"no helicity pattern has {size} windows")
