"""Running statistics, vectorized over columns (channels).

:class:`RunningStats` holds count, mean and ``m2`` and merges like Welford/Chan et al.;
:class:`SequentialMoments` accumulates a stream of samples so that the result depends only
on the sequence of samples, never on how the stream is cut into blocks (bit for bit).
Used for running means of pattern asymmetries: the error of the mean is the RMS of the
pattern asymmetries over sqrt(n), as in JAPAN, so beam noise that survives normalization
is included automatically.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable, ItemsView, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True, slots=True)
class Measurement:
    """A value with its error and the number of patterns behind it (NaN: undefined)."""

    value: float
    error: float
    n: int


Key = TypeVar("Key", bound=Hashable)


class MeasurementTable(Mapping[Key, Measurement]):
    """Measurements of many keys (channel names, or (channel, variable) pairs) held as
    arrays, ``value_array`` and ``error_array``, with ``n`` one pattern count for all or
    one per key: a read-only mapping whose :class:`Measurement` items are made when read.
    A run's result keeps one per minirun and kind; as dicts of objects, 512 channels x 5
    variables of slopes took 0.5 MB a minirun.

    ``layout`` (the keys, in order) is best shared between tables of the same keys
    (:func:`shared_keys`); the index from key to position is made on the first lookup by
    key (iterating needs none)."""

    __slots__ = ("_index", "error_array", "layout", "n", "value_array")

    def __init__(
        self, layout: tuple[Key, ...], values: ArrayLike, errors: ArrayLike, n: int | np.ndarray
    ) -> None:
        self.layout = layout
        self.value_array = np.asarray(values, dtype=np.float64)
        self.error_array = np.asarray(errors, dtype=np.float64)
        self.n = n
        self._index: dict[Key, int] | None = None
        shape = (len(layout),)
        if self.value_array.shape != shape or self.error_array.shape != shape:
            raise ValueError(f"{len(layout)} keys for values {self.value_array.shape}")

    def __getitem__(self, key: Key) -> Measurement:
        i = self._positions()[key]
        return Measurement(float(self.value_array[i]), float(self.error_array[i]), self.count(i))

    def count(self, i: int) -> int:
        """The pattern count of the ``i``-th key."""
        return self.n if isinstance(self.n, int) else int(self.n[i])

    def _positions(self) -> dict[Key, int]:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.layout)}
        return self._index

    def __iter__(self) -> Iterator[Key]:
        return iter(self.layout)

    def __len__(self) -> int:
        return len(self.layout)

    def __contains__(self, key: object) -> bool:
        return key in self._positions()

    def items(self) -> ItemsView[Key, Measurement]:
        return _TableItems(self)

    def restricted(self, keep: Callable[[Key], bool]) -> MeasurementTable[Key]:
        """The table of the keys ``keep`` accepts, in order."""
        kept = [i for i, key in enumerate(self.layout) if keep(key)]
        n = self.n if isinstance(self.n, int) else self.n[kept]
        layout = shared_keys(tuple(self.layout[i] for i in kept))
        return MeasurementTable(layout, self.value_array[kept], self.error_array[kept], n)

    def columns(self, layout: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Values and errors over ``layout`` (NaN for a key the table lacks)."""
        if layout is self.layout or layout == self.layout:
            return self.value_array, self.error_array
        return _columns(self, layout)

    def __repr__(self) -> str:
        return f"MeasurementTable({dict(self.items())!r})"


class _TableItems(ItemsView):
    """A table's items, read from its arrays in order (no index made)."""

    _mapping: MeasurementTable

    def __iter__(self) -> Iterator[tuple[Any, Measurement]]:
        table = self._mapping
        values, errors = table.value_array.tolist(), table.error_array.tolist()
        counts = [table.n] * len(values) if isinstance(table.n, int) else table.n.tolist()
        for key, value, error, n in zip(table, values, errors, counts, strict=True):
            yield key, Measurement(value, error, n)


def _columns(table: Mapping[Any, Measurement], layout: tuple) -> tuple[np.ndarray, np.ndarray]:
    values, errors = np.full(len(layout), np.nan), np.full(len(layout), np.nan)
    for j, key in enumerate(layout):
        m = table.get(key)
        if m is not None:
            values[j], errors[j] = m.value, m.error
    return values, errors


def stacked(
    tables: Sequence[Mapping[Any, Measurement]], layout: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Values and errors ``(tables, keys)`` of each table over ``layout`` (NaN where a
    table lacks a key), read from the arrays of a :class:`MeasurementTable`."""
    values, errors = np.full((2, len(tables), len(layout)), np.nan)
    for i, table in enumerate(tables):
        if isinstance(table, MeasurementTable):
            values[i], errors[i] = table.columns(layout)
        else:
            values[i], errors[i] = _columns(table, layout)
    return values, errors


@functools.lru_cache(maxsize=16)
def shared_keys(keys: tuple) -> tuple:
    """One tuple object for every equal ``keys`` (a table's layout, made once)."""
    return keys


@dataclass
class RunningStats:
    """Count, mean and sum of squared deviations (``m2``) of samples, per column."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, columns: int) -> RunningStats:
        zeros = np.zeros(columns)
        return cls(n=zeros.copy(), mean=zeros.copy(), m2=zeros.copy())

    @classmethod
    def of(cls, samples: np.ndarray) -> RunningStats:
        """Statistics of a ``(rows, columns)`` block of samples; NaN entries are skipped."""
        samples = np.asarray(samples, dtype=np.float64)
        total = samples.sum(axis=0)
        if np.isfinite(total).all():  # no NaN: the common case, a few passes fewer
            n = np.full(samples.shape[1], float(samples.shape[0]))
            mean = total / n if samples.shape[0] else np.zeros_like(total)
            deviation = samples - mean
            np.square(deviation, out=deviation)
            return cls(n=n, mean=mean, m2=deviation.sum(axis=0))
        valid = ~np.isnan(samples)
        n = valid.sum(axis=0).astype(np.float64)
        filled = np.where(valid, samples, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, filled.sum(axis=0) / n, 0.0)
        m2 = (np.where(valid, samples - mean, 0.0) ** 2).sum(axis=0)
        return cls(n=n, mean=mean, m2=m2)

    def state(self) -> dict[str, list[float]]:
        """The moments as plain lists (JSON-able; floats round-trip bit-exactly)."""
        return {"n": self.n.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> RunningStats:
        """Inverse of :meth:`state`."""
        n, mean, m2 = (np.array(state[k], dtype=np.float64) for k in ("n", "mean", "m2"))
        if not n.shape == mean.shape == m2.shape or n.ndim != 1:
            raise ValueError("running statistics state: n, mean and m2 must be equal-length lists")
        return cls(n=n, mean=mean, m2=m2)

    def split(self, widths: list[int]) -> list[RunningStats]:
        """The statistics of consecutive column groups of these ``widths``."""
        edges = np.cumsum([0, *widths])
        return [
            RunningStats(n=self.n[a:b], mean=self.mean[a:b], m2=self.m2[a:b])
            for a, b in pairwise(edges.tolist())
        ]

    def merge(self, other: RunningStats) -> RunningStats:
        """Statistics of the union of both sample sets."""
        n = self.n + other.n
        delta = other.mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, self.mean + delta * other.n / n, 0.0)
            m2 = self.m2 + other.m2 + np.where(n > 0, delta**2 * self.n * other.n / n, 0.0)
        return RunningStats(n=n, mean=mean, m2=m2)

    def since(self, earlier: RunningStats) -> RunningStats:
        """Statistics of the samples added after ``earlier`` (the inverse of :meth:`merge`:
        ``a.merge(b).since(a)`` is ``b`` up to rounding)."""
        n = self.n - earlier.n
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, (self.n * self.mean - earlier.n * earlier.mean) / n, 0.0)
            delta = mean - earlier.mean
            m2 = np.where(n > 0, self.m2 - earlier.m2 - delta**2 * earlier.n * n / self.n, 0.0)
        return RunningStats(n=n, mean=mean, m2=np.maximum(m2, 0.0))

    @property
    def variance(self) -> np.ndarray:
        """Sample variance (n - 1 denominator); NaN with fewer than two samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 1, self.m2 / (self.n - 1), np.nan)

    @property
    def error(self) -> np.ndarray:
        """Standard error of the mean; NaN with fewer than two samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.variance / self.n)


def events_for_significance(asymmetry: float, n_sigma: float, dilution: float = 1.0) -> float:
    """Counted events needed to see ``asymmetry`` (fraction) at ``n_sigma``: a counting
    asymmetry has ``sigma_A = 1 / sqrt(N)`` and is measured as ``dilution * A`` (dilution: the
    product of polarization and signal fraction), so ``N = (n_sigma / (dilution * A))**2``."""
    return (n_sigma / (dilution * asymmetry)) ** 2


def weighted_mean(values: np.ndarray, errors: np.ndarray) -> tuple[float, float, float]:
    """Inverse-variance weighted mean of independent measurements.

    Returns ``(mean, error, chi2_ndf)``; entries with a non-finite or zero error are
    ignored, and everything is NaN if none is usable.  ``chi2_ndf`` is NaN for one entry.
    """
    mean, error, chi2_ndf = weighted_means(np.reshape(values, (-1, 1)), np.reshape(errors, (-1, 1)))
    return float(mean[0]), float(error[0]), float(chi2_ndf[0])


def weighted_means(
    values: np.ndarray, errors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`weighted_mean` of every column of ``values`` and ``errors`` ``(entries,
    columns)``: ``(mean, error, chi2_ndf)``, each ``(columns,)``."""
    values, errors = np.asarray(values, float), np.asarray(errors, float)
    use = np.isfinite(values) & np.isfinite(errors) & (errors > 0)
    w = np.zeros(values.shape)
    np.divide(1.0, errors**2, out=w, where=use)
    x = np.where(use, values, 0.0)
    total = w.sum(axis=0)
    ndf = use.sum(axis=0) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ndf >= 0, (w * x).sum(axis=0) / total, np.nan)
        error = np.where(ndf >= 0, 1.0 / np.sqrt(total), np.nan)
        chi2 = (w * (x - mean) ** 2).sum(axis=0)
        chi2_ndf = np.where(ndf > 0, chi2 / ndf, np.nan)
    return mean, error, chi2_ndf


def pulled_miniruns(patterns_good: ArrayLike, minirun_patterns: int) -> np.ndarray:
    """Mask of the miniruns that enter the minirun pulls and chi2/ndf: those holding at
    least half of ``minirun_patterns`` good patterns (pairs, for the slow schemes).

    A minirun's error is estimated from the scatter of its own patterns; over a handful
    of them that estimate is so uncertain that the pull has long tails (3 patterns: 5 %
    beyond 4 sigma), so the newest minirun of a running run, or a short last one, would
    make chi2/ndf jump and raise a false alarm each time a minirun starts."""
    return 2 * np.asarray(patterns_good) >= minirun_patterns


class Workspace:
    """Float64 scratch arrays reused from call to call (grown, never shrunk).

    A fresh large numpy array costs a page fault per 4 kB on first touch (glibc hands big
    blocks back to the kernel when they are freed); on a virtual machine that can cost more
    than the arithmetic.  The hot path takes its big temporaries from here instead."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialized C-contiguous array of ``shape``; valid until the next ``take(name)``."""
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[name] = np.empty(size)
        return buffer[:size].reshape(shape)


GROUP_SAMPLES = 64
"""Samples per summation group of :class:`SequentialMoments` (counted from the first sample)."""


def in_order(start: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``((start + rows[0]) + rows[1]) + ...``, strictly left to right, per column (a row at a
    time: ``sum`` would pick its own order from the array's shape and layout)."""
    out = start.copy()
    for row in rows:
        out += row
    return out


def grouped_sums(
    sums: np.ndarray, open_: np.ndarray, rows: int, terms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Column sums of a stream of rows, in an order fixed by the stream alone.

    Rows are summed in groups of :data:`GROUP_SAMPLES` counted from the stream's first
    row: within a group left to right starting from 0, then the group sums left to
    right.  ``sums`` holds the complete groups, ``open_`` the group still filling, after
    ``rows`` rows; returns both once the rows ``terms`` are appended (complete groups of
    ``terms`` are summed together, vectorized)."""
    size, k = terms.shape[0], GROUP_SAMPLES
    done = 0
    filled = rows % k
    if filled:  # continue the open group
        done = min(size, k - filled)
        open_ = in_order(open_, terms[:done])
        if filled + done == k:
            sums, open_ = sums + open_, np.zeros_like(open_)
    full = (size - done) // k
    if full:
        groups = terms[done : done + full * k].reshape(full, k, -1)
        group_sums = np.zeros((full, terms.shape[1]))
        for j in range(k):  # left to right within each group, all groups at once
            group_sums += groups[:, j]
        sums = in_order(sums, group_sums)
        done += full * k
    if done < size:  # a new open group
        open_ = in_order(np.zeros_like(open_), terms[done:])
    return sums, open_


@dataclass(eq=False)
class SequentialMoments:
    """Moments of a stream of samples per column, the same to the last bit however the
    stream is cut into blocks (a pure function of the sequence of samples).

    Each column's samples are shifted by its first valid sample (``shift``: deviations stay
    small, so ``m2`` from the sums of deviations and their squares loses no precision).  The
    deviations ``d`` and ``d**2`` are summed in *groups* of :data:`GROUP_SAMPLES` consecutive
    samples counted from the stream's first: within a group left to right starting from 0,
    then the group sums left to right.  ``sums`` holds the complete groups, ``open`` the
    group still filling; complete groups of a block are summed together (vectorized).
    NaN samples are skipped (counted in ``rows``, not in ``n``).
    """

    rows: int  # samples added, NaN or not (positions in the stream)
    n: np.ndarray  # (w,) valid samples
    shift: np.ndarray  # (w,) first valid sample, 0 while there is none
    sums: np.ndarray  # (2, w): sum of d and of d**2 over complete groups
    open: np.ndarray  # (2, w): the same over the open group

    @classmethod
    def empty(cls, columns: int) -> SequentialMoments:
        zeros = np.zeros(columns)
        return cls(0, zeros.copy(), zeros.copy(), np.zeros((2, columns)), np.zeros((2, columns)))

    @property
    def columns(self) -> int:
        return int(self.n.size)

    def add(self, samples: np.ndarray, work: Workspace | None = None) -> None:
        """Append a ``(rows, columns)`` block of samples to the stream (``work``: scratch)."""
        x = np.asarray(samples, dtype=np.float64)
        size = x.shape[0]
        if size == 0:
            return
        fresh = np.flatnonzero(self.n == 0)
        if fresh.size:  # first valid sample of each column still without one
            valid = ~np.isnan(x[:, fresh])
            first = valid.argmax(axis=0)
            found = valid[first, np.arange(fresh.size)]
            self.shift[fresh[found]] = x[first[found], fresh[found]]
        shape = (size, 2, x.shape[1])
        terms = np.empty(shape) if work is None else work.take("moments", shape)
        d = np.subtract(x, self.shift, out=terms[:, 0])
        np.multiply(d, d, out=terms[:, 1])
        sums, open_ = self._grouped(terms.reshape(size, -1))
        if np.isnan(sums).any() or np.isnan(open_).any():  # NaN samples: sum without them
            skipped = np.isnan(x)
            terms[:, 0][skipped] = 0.0
            terms[:, 1][skipped] = 0.0
            sums, open_ = self._grouped(terms.reshape(size, -1))
            self.n += size - skipped.sum(axis=0)
        else:
            self.n += size
        self.sums, self.open = sums.reshape(2, -1), open_.reshape(2, -1)
        self.rows += size

    def _grouped(self, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(sums, open)`` once ``terms`` (rows of d and d**2) are appended."""
        return grouped_sums(self.sums.reshape(-1), self.open.reshape(-1), self.rows, terms)

    def stats(self) -> RunningStats:
        """The moments as :class:`RunningStats` (count, mean, m2)."""
        s1, s2 = self.sums + self.open
        n = self.n.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, self.shift + s1 / n, 0.0)
            m2 = np.where(n > 0, np.maximum(s2 - s1 * s1 / n, 0.0), 0.0)
        return RunningStats(n=n, mean=mean, m2=m2)

    def state(self) -> dict:
        """Plain JSON-able values (floats round-trip bit-exactly)."""
        return {
            "rows": self.rows,
            "n": self.n.tolist(),
            "shift": self.shift.tolist(),
            "sums": self.sums.tolist(),
            "open": self.open.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> SequentialMoments:
        """Inverse of :meth:`state`."""
        n, shift = (np.array(state[k], dtype=np.float64) for k in ("n", "shift"))
        sums, open_ = (np.array(state[k], dtype=np.float64) for k in ("sums", "open"))
        if (
            n.ndim != 1
            or not n.shape == shift.shape
            or not sums.shape == open_.shape == (2, *n.shape)
        ):
            raise ValueError("sequential moments state: n, shift, sums and open disagree in shape")
        rows = int(state["rows"])
        if rows < 0:
            raise ValueError("sequential moments state: rows must not be negative")
        return cls(rows, n, shift, sums, open_)

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality (NaN equals NaN)."""
        if not isinstance(other, SequentialMoments):
            return NotImplemented
        return self.rows == other.rows and all(
            np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
            for k in ("n", "shift", "sums", "open")
        )
