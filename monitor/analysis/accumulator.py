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

**The beam.** The map's beam position monitors (``bpm`` channels) are not detectors: the
accumulator forms asymmetries from the detector channels alone (:attr:`channel_map` is
the detector map) and takes the beam variables at the target from the monitors
(:class:`mupnc.daq.beamline.BeamLine`).  A pattern with a window in which a monitor read
beyond its range is cut, like a low-beam pattern, and counted (``patterns_beam_cut``).
Per good pattern it keeps the helicity-correlated difference of every beam variable,
``(mean in + windows - mean in - windows) / 2``, among the per-pattern columns, and feeds
the regression sums (:class:`mupnc.monitor.analysis.regression.CrossMoments`) of every
detector channel and of the combined groups (the scatter sum; the forward and backward
sums) against those differences.

**Beam modulation.** A pattern holding a window flagged
:data:`mupnc.daq.blocks.FLAG_MODULATION` (the coils move the beam) is cut from every
good-pattern sum, before the beam-monitor cut, and counted (``patterns_modulation``, in
the minirun its windows fall in); like a low-beam pattern, its windows stay in the
helicity-sorted counts of all released windows.  Cycles are the contiguous stretches of
flagged windows in the released stream, numbered from 0 as they start
(``modulation_cycles``).  A flagged window whose pattern the decoder (and the low-beam
cut) passed, with the beam monitor above 0 and every beam position monitor in range, feeds
:class:`mupnc.monitor.analysis.modulation.ModulationSums` of its minirun, averaged with the
other windows of its pattern that drive the same coil (a pattern's helicity states cancel
in the mean: fed window by window, a large physics asymmetry counted as noise in the
yields' residuals and made the sensitivities' errors up to three times too large): its
cycle, the coil currents (the map's ``coil`` channels, mA), the beam variables at the
target and the normalised yields ``counts / beam monitor`` of every detector channel and
combined group (the regression's targets; for A_FB also the cross-ratio target).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np

from mupnc.daq.beamline import BeamLine
from mupnc.daq.blocks import FLAG_MODULATION
from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.helicity import PATTERN_SHAPES
from mupnc.monitor.analysis.asymmetry import alternate_signs, cross_ratio_asymmetry, yield_asymmetry
from mupnc.monitor.analysis.modulation import ModulationSums
from mupnc.monitor.analysis.regression import CrossMoments
from mupnc.monitor.analysis.statistics import RunningStats, SequentialMoments, Workspace
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder
from mupnc.monitor.decoding.stream import VARIABLE_PATTERNS, DecodedWindows

PLUS, MINUS = 0, 1
STATE_VERSION = 7
"""Layout of :meth:`RunAccumulator.state`; version 1 (Welford merges per block), 2 (no
good-pattern sums, no per-pattern combined columns), 3 (no good-pattern sums by null
sign), 4 (no beam differences and regression sums), 5 (no modulation cut and sums: its
good-pattern sums may hold modulation windows) and 6 (A_FB modulation sums without the
cross-ratio target) are refused."""
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
    ``beam_difference`` (a fifth group of per-pattern columns) holds the beam variables'
    differences; ``regression`` the regression sums of the ``n_targets`` targets (detector
    channels, then the combined groups) on them; ``patterns_beam_cut`` the patterns cut
    for a beam monitor out of range; ``monitor_changes`` counts, per beam position
    monitor, the released windows whose word differs from the window's before (a stuck
    monitor stops counting); ``patterns_modulation`` the patterns cut for a modulation
    window; ``modulation`` the modulation sums of the ``n_coils`` coils (module docstring).
    """

    index: int
    n_channels: int
    n_null: int = 0
    afb: bool = False
    n_beam: int = 0
    n_targets: int = 0
    n_coils: int = 0
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
    patterns_beam_cut: int = 0
    patterns_modulation: int = 0
    n_monitors: int = 0
    monitor_changes: np.ndarray = field(init=False)  # (k,) per beam position monitor
    moments: SequentialMoments = field(init=False)  # per-pattern values, see above
    regression: CrossMoments = field(init=False)
    modulation: ModulationSums = field(init=False)

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
        self.regression = CrossMoments.empty(self.n_beam, self.n_targets)
        self.monitor_changes = np.zeros(self.n_monitors, dtype=np.int64)
        targets = self.n_targets + (1 if self.afb and self.n_targets else 0)  # cross ratio
        self.modulation = ModulationSums.empty(self.n_coils, self.n_beam, targets)

    @property
    def widths(self) -> list[int]:
        """Column widths: channel, null (kinds x channels), charge, combined + nulls, beam."""
        c, k = self.n_channels, self.n_null
        return [c, k * c, 1, 1 + k, self.n_beam]

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

    @property
    def beam_difference(self) -> RunningStats:
        """Per-pattern helicity-correlated differences of the beam variables."""
        return self._parts()[4]

    def state(self) -> dict:
        """Every field as plain JSON-able values (see :meth:`RunAccumulator.state`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SequentialMoments | CrossMoments | ModulationSums):
                value = value.state()
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            out[f.name] = value
        return out

    @classmethod
    def from_state(cls, state: dict) -> MinirunSums:
        scalars = ("index", "n_channels", "n_null", "afb", "n_beam", "n_targets", "n_coils")
        given = {name: state[name] for name in scalars}
        m = cls(**given, n_monitors=len(state["monitor_changes"]))
        for f in fields(m)[len(scalars) :]:
            current = getattr(m, f.name)
            value: object  # of the field's own type
            if isinstance(current, SequentialMoments):
                value = SequentialMoments.from_state(state[f.name])
                shape, expected = value.n.shape, current.n.shape
            elif isinstance(current, CrossMoments):
                value = CrossMoments.from_state(state[f.name])
                shape = (value.variables, value.targets)
                expected = (current.variables, current.targets)
            elif isinstance(current, ModulationSums):
                value = ModulationSums.from_state(state[f.name])
                shape = (value.coils, value.variables, value.targets)
                expected = (current.coils, current.variables, current.targets)
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
    :func:`mupnc.monitor.analysis.statistics.in_order`).  The summed axis is moved outermost
    and reduced a row at a time, vectorized along the rest, which numpy does in order where
    a row holds two or more values (one value it sums pairwise: those rows accumulate;
    ``tests/test_statistics.py`` pins both)."""
    rows = np.moveaxis(x, axis, 0)
    if rows[0].size < 2:
        return np.take(np.add.accumulate(x, axis=axis), -1, axis=axis)
    return np.add.reduce(np.ascontiguousarray(rows), axis=0)


def column_sums(x: np.ndarray, columns: slice | list[int]) -> np.ndarray:
    """Per row of ``x`` (2-D), the sum of its ``columns``, strictly left to right."""
    return last_along(x.T[columns], 0)


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
        self.beamline = BeamLine.of(channel_map)
        self.channel_map = channel_map.detectors()
        """The detector channels (asymmetries are formed from these alone)."""
        self._detector_columns = _columns(channel_map.detector_columns, len(channel_map.channels))
        self.coil_columns = channel_map.coils
        """Columns of the modulation coils' current readbacks (role ``coil``)."""
        self.coil_names = tuple(channel_map.channels[i].name for i in self.coil_columns)
        self._ma_per_count = np.array(
            [channel_map.channels[i].ma_per_count for i in self.coil_columns], dtype=np.float64
        )
        self.pattern_size = pattern_size
        self.minirun_patterns = minirun_patterns
        self.rotator_span = rotator_span
        self.n_channels = len(self.channel_map.channels)
        self.null_names = null_names(pattern_size, rotator_span)
        if pattern_size != VARIABLE_PATTERNS:
            shape = _shape_of(pattern_size)
            alternates = list(alternate_signs(pattern_size).values())
            self._walsh = walsh_rows(np.column_stack([shape, *alternates]))
        detectors = self.channel_map
        self._forward = detectors.indices("forward")
        self._backward = detectors.indices("backward")
        self._scatter = detectors.indices("scatter")
        self.afb = bool(self._forward and self._backward)
        self.target_groups = (
            {"forward": self._forward, "backward": self._backward}
            if self.afb
            else ({"scatter": self._scatter} if self._scatter else {})
        )
        """The combined groups regressed beside the channels (channel indices each)."""
        self.miniruns: list[MinirunSums] = [self._new_minirun(0)]
        self.last_monitor_words: list[int] | None = None
        """Beam position monitor words of the last released window (for ``monitor_changes``)."""
        self.modulation_cycles = 0
        """Modulation cycles begun so far (the next one's index)."""
        self.last_modulated = False
        """Whether the last released window was a modulation window (a cycle goes on)."""
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
        return MinirunSums(
            index,
            self.n_channels,
            len(self.null_names),
            self.afb,
            len(self.beamline.variables),
            self.n_channels + len(self.target_groups),
            len(self.coil_columns),
            n_monitors=len(self.beamline.columns),
        )

    def state(self) -> dict:
        """Everything needed to continue accumulating exactly where this left off.

        Plain JSON-able values (lists, ints, floats; Python floats round-trip bit-exactly
        through ``json``), including the running moments of every minirun.
        """
        return {**self.header_state(), "miniruns": [m.state() for m in self.miniruns]}

    def header_state(self) -> dict:
        """:meth:`state` without the miniruns' (a recorder saves each minirun's with its
        row: made every second for all of them, they were ~20k floats per minirun)."""
        return {
            "version": STATE_VERSION,
            "channels": self.channel_map.names,
            "beam_monitors": list(self.beamline.names),
            "coils": list(self.coil_names),
            "last_monitor_words": self.last_monitor_words,
            "modulation_cycles": self.modulation_cycles,
            "last_modulated": self.last_modulated,
            "pattern_size": self.pattern_size,
            "rotator_span": self.rotator_span,
            "minirun_patterns": self.minirun_patterns,
        }

    @classmethod
    def from_state(cls, channel_map: ChannelMap, state: dict) -> RunAccumulator:
        """Restore an accumulator saved by :meth:`state`, bit-exactly.

        Only the newest restored minirun is marked dirty: the rows of the others were
        written in the transaction that saved this state, and rewriting every minirun of a
        long run at once (800k rows after 30 minutes at MOLLER scale) stalled a restarted
        monitor for half a minute while its ring refill waited.  Raises ``ValueError`` if
        the state does not belong to this channel map or was written by another layout
        version.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"accumulator state version {state.get('version')!r} is not {STATE_VERSION} "
                "(saved by another monitor version; reanalyze the run from its recording)"
            )
        monitors = [channel_map.channels[i].name for i in channel_map.indices("bpm")]
        coils = [channel_map.channels[i].name for i in channel_map.coils]
        if (
            list(state["channels"]) != channel_map.detectors().names
            or list(state["beam_monitors"]) != monitors
            or list(state["coils"]) != coils
        ):
            raise ValueError("accumulator state was saved for a different channel map")
        acc = cls(
            channel_map,
            int(state["pattern_size"]),
            int(state["minirun_patterns"]),
            int(state.get("rotator_span", 2)),  # saved before rotator quartets: pairs
        )
        acc.miniruns = [MinirunSums.from_state(m) for m in state["miniruns"]]
        acc.last_monitor_words = state["last_monitor_words"]
        acc.modulation_cycles = int(state["modulation_cycles"])
        acc.last_modulated = bool(state["last_modulated"])
        if [m.index for m in acc.miniruns] != list(range(len(acc.miniruns))) or not acc.miniruns:
            raise ValueError("accumulator state: miniruns must be numbered 0, 1, 2, ...")
        expected = (
            acc.n_channels,
            len(acc.null_names),
            acc.afb,
            len(acc.beamline.variables),
            acc.n_channels + len(acc.target_groups),
            len(acc.coil_columns),
        )
        if any(
            (m.n_channels, m.n_null, m.afb, m.n_beam, m.n_targets, m.n_coils) != expected
            for m in acc.miniruns
        ):
            raise ValueError("accumulator state: channel layout differs from the channel map")
        acc.dirty = {len(acc.miniruns) - 1} if acc.miniruns else set()
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
        changed = self._monitor_changes(decoded)
        modulated, cycle = self._modulation_windows(decoded)
        feed = self._modulation_feed(decoded, modulated)
        decoded, modulation_cut = self._modulation_cut(decoded, modulated)
        decoded, beam_cut = self._beam_monitor_cut(decoded)
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
        while len(self.miniruns) <= first:
            self.miniruns.append(self._new_minirun(len(self.miniruns)))
        for index, start, stop in zip(
            range(first, last + 1), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True
        ):
            while len(self.miniruns) <= index:
                self.miniruns.append(self._new_minirun(len(self.miniruns)))
            self.dirty.add(index)
            self.miniruns[index].monitor_changes += np.count_nonzero(changed[start:stop], axis=0)
            at = np.searchsorted(starts, np.arange(start + step, stop, step))
            cuts = starts[at[at < starts.size]]
            edges = np.unique(np.r_[start, cuts[cuts < stop], stop]).tolist()
            for a, b in itertools.pairwise(edges):  # slices end on pattern boundaries
                self._add_to(self.miniruns[index], decoded, slice(a, b), feed, cycle)
        for attribute, cut in (
            ("patterns_modulation", modulation_cut),
            ("patterns_beam_cut", beam_cut),
        ):
            # each cut pattern in the minirun its windows fall in
            at = minirun[np.searchsorted(pattern, cut)]
            for index, count in zip(*np.unique(at, return_counts=True), strict=True):
                m = self.miniruns[int(index)]
                setattr(m, attribute, getattr(m, attribute) + int(count))

    def _monitor_changes(self, decoded: DecodedWindows) -> np.ndarray:
        """Per window and beam position monitor, whether its word differs from the one
        before, ``(n, k)``."""
        if not self.beamline.columns:
            return np.zeros((decoded.n_windows, 0), dtype=bool)
        words = decoded.counts[:, list(self.beamline.columns)]
        before = words[:1] if self.last_monitor_words is None else [self.last_monitor_words]
        previous = np.concatenate([before, words[:-1]])
        self.last_monitor_words = [int(w) for w in words[-1]]
        return words != previous

    def _modulation_windows(self, decoded: DecodedWindows) -> tuple[np.ndarray, np.ndarray]:
        """Which windows are modulation windows, and each one's cycle index (-1 for the
        others): a cycle begins at a modulation window that follows another window."""
        flags = decoded.window_flags().astype(np.int64)
        modulated = (flags & FLAG_MODULATION) != 0
        begins = modulated & ~np.r_[self.last_modulated, modulated[:-1]]
        cycle = np.where(modulated, self.modulation_cycles - 1 + np.cumsum(begins), -1)
        self.modulation_cycles += int(begins.sum())
        self.last_modulated = bool(modulated[-1])
        return modulated, cycle

    def _modulation_feed(self, decoded: DecodedWindows, modulated: np.ndarray) -> np.ndarray:
        """The modulation windows that feed the modulation sums (module docstring)."""
        if not self.coil_columns or not modulated.any():
            return np.zeros(decoded.n_windows, dtype=bool)
        feed = modulated & decoded.good & (decoded.beam_monitor > 0)
        if self.beamline.columns:
            feed &= ~self.beamline.out_of_range(decoded.counts)
        return feed

    def _modulation_cut(
        self, decoded: DecodedWindows, modulated: np.ndarray
    ) -> tuple[DecodedWindows, np.ndarray]:
        """``decoded`` with the good patterns holding a modulation window marked not good,
        and those patterns' numbers."""
        hit = decoded.good & modulated
        if not hit.any():
            return decoded, np.zeros(0, dtype=np.int64)
        cut = np.unique(decoded.pattern_number[hit])
        good = decoded.good & ~np.isin(decoded.pattern_number, cut)
        return dataclasses.replace(decoded, good=good), cut

    def _add_modulation(
        self, m: MinirunSums, d: DecodedWindows, rows: np.ndarray, cycle: np.ndarray
    ) -> None:
        """Feed the modulation windows ``rows`` of ``d`` (cycles ``cycle``) to ``m``, as the
        means of each pattern's windows with the same coil driven (module docstring)."""
        window_counts = d.counts[rows]
        current = window_counts[:, self.coil_columns] * self._ma_per_count
        beam = self.beamline.at_target(window_counts)
        if self._detector_columns is not None:
            window_counts = window_counts[:, self._detector_columns]
        with np.errstate(invalid="ignore", divide="ignore"):
            yields = window_counts / d.beam_monitor[rows, None]
        driven = current != 0
        coil = np.where(driven.sum(axis=1) == 1, np.argmax(driven, axis=1), -1)
        pattern = d.pattern_number[rows]
        same = (cycle[1:] == cycle[:-1]) & (pattern[1:] == pattern[:-1]) & (coil[1:] == coil[:-1])
        starts = np.flatnonzero(np.r_[True, ~same])
        size = np.diff(np.r_[starts, rows.size]).astype(np.float64)[:, None]

        def means(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values, starts, axis=0) / size

        yields = means(yields)
        groups = [column_sums(yields, idx) for idx in self.target_groups.values()]
        if self.afb:  # the cross-ratio target (mupnc.monitor.analysis.modulation.CROSS_RATIO)
            with np.errstate(invalid="ignore", divide="ignore"):
                groups.append(np.sqrt(groups[1] / groups[0]))
        targets = np.column_stack([yields, *groups])
        m.modulation.add(cycle[starts], means(current), means(beam), targets)

    def _beam_monitor_cut(self, decoded: DecodedWindows) -> tuple[DecodedWindows, np.ndarray]:
        """``decoded`` with the good patterns in which a beam monitor read beyond its range
        marked not good, and those patterns' numbers."""
        none = np.zeros(0, dtype=np.int64)
        if not self.beamline.columns:
            return decoded, none
        beyond = decoded.good & self.beamline.out_of_range(decoded.counts)
        if not beyond.any():
            return decoded, none
        cut = np.unique(decoded.pattern_number[beyond])
        good = decoded.good & ~np.isin(decoded.pattern_number, cut)
        return dataclasses.replace(decoded, good=good), cut

    def _add_to(
        self,
        m: MinirunSums,
        d: DecodedWindows,
        part: slice,
        feed: np.ndarray | None = None,
        cycle: np.ndarray | None = None,
    ) -> None:
        if feed is not None and cycle is not None and feed[part].any():
            rows = part.start + np.flatnonzero(feed[part])
            self._add_modulation(m, d, rows, cycle[rows])
        counts = self._work.take("counts", (part.stop - part.start, self.n_channels))
        window_counts = d.counts[part]
        beam = self.beamline.at_target(window_counts) if m.n_beam else None
        if self._detector_columns is not None:
            window_counts = window_counts[:, self._detector_columns]
        np.copyto(counts, window_counts)
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
            beam = None if beam is None else beam[good]
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
            beam_sums = (
                None if beam is None else self._segment_sums(beam, bcm, helicity, pattern, [])
            )
        else:
            sums = self._fixed_sums(yields, bcm, helicity, self._work)
            # the beam's own buffers: ``sums`` holds views of the workspace's
            beam_sums = None if beam is None else self._fixed_sums(beam, bcm, helicity, None)
        values = self._pattern_values(sums)
        if beam_sums is not None:
            differences = _half_difference_and_sum(beam_sums, self.pattern_size)[0]
            values[:, -m.n_beam :] = differences
            noise = _resolution_factor(beam_sums, self.pattern_size)
            m.regression.add(differences, *self._regression_targets(sums), noise)
        m.add_patterns(values, self._work)

    def _regression_targets(self, s: _PatternSums) -> tuple[np.ndarray, np.ndarray]:
        """Per pattern ``u`` and ``w`` of every detector channel, then of each combined
        group (:attr:`target_groups`): half the difference and half the sum of the mean
        yields by helicity (:mod:`mupnc.monitor.analysis.regression`)."""
        groups = [
            (column_sums(s.total, idx), column_sums(s.signed[0], idx))
            for idx in self.target_groups.values()
        ]
        total = np.column_stack([s.total, *(t for t, _ in groups)])
        signed = np.column_stack([s.signed[0], *(g for _, g in groups)])
        windows = None if s.windows is None else (s.windows[0][:, :1], s.windows[1][:, :1])
        sums = _PatternSums(total, [signed], s.total_q, [], windows)
        return _half_difference_and_sum(sums, self.pattern_size)

    def _fixed_sums(
        self, yields: np.ndarray, bcm: np.ndarray, helicity: np.ndarray, work: Workspace | None
    ) -> _PatternSums:
        """Sums over fixed-size patterns; sign columns ``[helicity, null...]`` (``work``:
        scratch the result's arrays live in)."""
        size = self.pattern_size
        p = helicity.size // size
        polarity = helicity[::size].astype(np.float64)  # the shape's first window is +1
        walsh = walsh_transform(yields.reshape(p, size, yields.shape[1]), work)
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
            f_total = column_sums(s.total, self._forward)
            b_total = column_sums(s.total, self._backward)
            for i, signed in enumerate(s.signed):
                f_signed = column_sums(signed, self._forward)
                b_signed = column_sums(signed, self._backward)
                out[:, k * c + 1 + i] = cross_ratio_asymmetry(
                    f_total + f_signed, f_total - f_signed, b_total + b_signed, b_total - b_signed
                )
        elif not self._scatter:
            out[:, k * c + 1 :] = np.nan
        else:
            total = column_sums(s.total, self._scatter)
            with np.errstate(invalid="ignore", divide="ignore"):
                for i, signed in enumerate(s.signed):
                    summed = column_sums(signed, self._scatter)
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


def _columns(detectors: list[int], channels: int) -> slice | list[int] | None:
    """How to take the detector columns out of a block's ``channels`` columns of counts:
    None (all of them), a slice (one run of columns: a view, no copy) or their indices."""
    if len(detectors) == channels:
        return None
    if detectors == list(range(detectors[0], detectors[-1] + 1)):
        return slice(detectors[0], detectors[-1] + 1)
    return detectors


def _half_difference_and_sum(s: _PatternSums, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern and column, ``(mean+ - mean-) / 2`` and ``(mean+ + mean-) / 2`` of the
    summed values by helicity (``signed[0]``); ``size`` windows per balanced pattern."""
    total, signed = s.total, s.signed[0]
    if s.windows is None:  # balanced: size / 2 windows in each state
        return signed / size, total / size
    n_plus, n_minus = s.windows[0][:, :1], s.windows[1][:, :1]
    plus, minus = (total + signed) / (2 * n_plus), (total - signed) / (2 * n_minus)
    return (plus - minus) / 2.0, (plus + minus) / 2.0


def _resolution_factor(s: _PatternSums, size: int) -> np.ndarray:
    """Per pattern ``(1/n+ + 1/n-) / 4``: the variance of a half difference of two means of
    independent windows, per unit window variance (``1 / size`` for balanced patterns)."""
    if s.windows is None:
        return np.full(s.total.shape[0], 1.0 / size)
    n_plus, n_minus = s.windows[0][:, 0], s.windows[1][:, 0]
    with np.errstate(divide="ignore"):
        return (1.0 / n_plus + 1.0 / n_minus) / 4.0


def _shape_of(size: int) -> np.ndarray:
    """The shape (relative helicity of each window) of the pattern with ``size`` windows."""
    for shape in PATTERN_SHAPES.values():
        if shape.size == size:
            return shape.astype(np.int64)
    raise ValueError(f"no helicity pattern has {size} windows")
