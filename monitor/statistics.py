"""Running statistics: Welford's algorithm, vectorized over channels and mergeable (Chan et al.).

Used for running means of pattern asymmetries: the error of the mean is the RMS of the
pattern asymmetries over sqrt(n), as in JAPAN, so beam noise that survives normalization
is included automatically.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np


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


def weighted_mean(values: np.ndarray, errors: np.ndarray) -> tuple[float, float, float]:
    """Inverse-variance weighted mean of independent measurements.

    Returns ``(mean, error, chi2_ndf)``; entries with a non-finite or zero error are
    ignored, and everything is NaN if none is usable.  ``chi2_ndf`` is NaN for one entry.
    """
    values, errors = np.asarray(values, float), np.asarray(errors, float)
    use = np.isfinite(values) & np.isfinite(errors) & (errors > 0)
    if not use.any():
        return float("nan"), float("nan"), float("nan")
    w = 1.0 / errors[use] ** 2
    mean = float((w * values[use]).sum() / w.sum())
    error = float(1.0 / np.sqrt(w.sum()))
    ndf = int(use.sum()) - 1
    chi2 = float((w * (values[use] - mean) ** 2).sum())
    return mean, error, (chi2 / ndf if ndf > 0 else float("nan"))
