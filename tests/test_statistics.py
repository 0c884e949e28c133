"""RunningStats (Welford / Chan merge) and the inverse-variance weighted mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupnc.monitor.analysis.accumulator import column_sums, last_along
from mupnc.monitor.analysis.statistics import RunningStats, in_order, weighted_mean


def merged_in_chunks(samples: np.ndarray, rng: np.random.Generator) -> RunningStats:
    """Split the rows at random points (empty chunks included) and merge chunk statistics."""
    cuts = np.sort(rng.integers(0, samples.shape[0] + 1, size=12))
    stats = RunningStats.empty(samples.shape[1])
    for chunk in np.split(samples, cuts):
        stats = stats.merge(RunningStats.of(chunk))
    return stats


@pytest.mark.parametrize("seed", range(5))
def test_chunked_merge_equals_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # offset and scales typical of asymmetries: mean 1e-3, width 1e-2 .. 10
    samples = 1e-3 + rng.standard_normal((3000, 4)) * np.array([1e-2, 0.3, 1.0, 10.0])
    stats = merged_in_chunks(samples, rng)
    np.testing.assert_array_equal(stats.n, np.full(4, 3000.0))
    np.testing.assert_allclose(stats.mean, samples.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.variance, samples.var(axis=0, ddof=1), rtol=1e-12)
    np.testing.assert_allclose(stats.error, samples.std(axis=0, ddof=1) / np.sqrt(3000), rtol=1e-12)
    # one-shot and chunked agree too
    whole = RunningStats.of(samples)
    np.testing.assert_allclose(whole.mean, stats.mean, rtol=1e-12)
    np.testing.assert_allclose(whole.m2, stats.m2, rtol=1e-12)


def test_large_offset_is_numerically_stable() -> None:
    rng = np.random.default_rng(42)
    samples = 1e6 + rng.standard_normal((2000, 1))
    stats = merged_in_chunks(samples, rng)
    np.testing.assert_allclose(stats.mean, samples.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.variance, samples.var(axis=0, ddof=1), rtol=1e-9)


def test_nan_entries_skipped() -> None:
    rng = np.random.default_rng(3)
    samples = rng.standard_normal((1000, 3))
    samples[rng.random((1000, 3)) < 0.2] = np.nan
    samples[:, 2] = np.nan
    samples[17, 2] = 2.5  # a single valid sample in the last column
    stats = merged_in_chunks(samples, rng)
    for j in range(2):
        column = samples[:, j][~np.isnan(samples[:, j])]
        assert stats.n[j] == column.size
        assert math.isclose(stats.mean[j], column.mean(), rel_tol=1e-12)
        assert math.isclose(stats.variance[j], column.var(ddof=1), rel_tol=1e-12)
    assert stats.n[2] == 1
    assert stats.mean[2] == 2.5
    assert stats.m2[2] == 0
    assert np.isnan(stats.variance[2]) and np.isnan(stats.error[2])


def test_all_nan_and_empty() -> None:
    stats = RunningStats.of(np.full((5, 2), np.nan))
    assert stats.n.tolist() == [0, 0]
    assert np.isfinite(stats.mean).all() and np.isfinite(stats.m2).all()
    assert np.isnan(stats.variance).all()
    merged = RunningStats.empty(2).merge(stats)
    assert merged.n.tolist() == [0, 0] and np.isfinite(merged.mean).all()
    data = np.array([[1.0, 2.0], [3.0, 6.0]])
    merged = merged.merge(RunningStats.of(data)).merge(RunningStats.empty(2))
    assert merged.mean.tolist() == [2.0, 4.0]
    assert merged.variance.tolist() == [2.0, 8.0]


def test_merge_is_symmetric() -> None:
    rng = np.random.default_rng(5)
    a, b = RunningStats.of(rng.random((10, 2))), RunningStats.of(rng.random((300, 2)) + 4)
    ab, ba = a.merge(b), b.merge(a)
    np.testing.assert_allclose(ab.mean, ba.mean, rtol=1e-14)
    np.testing.assert_allclose(ab.m2, ba.m2, rtol=1e-13)


def test_weighted_mean_by_hand() -> None:
    # values 1, 2, 4 with errors 1, 2, 4: weights 1, 1/4, 1/16, sum 21/16
    mean, error, chi2_ndf = weighted_mean(np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0, 4.0]))
    expected_mean = (1 * 1 + 2 / 4 + 4 / 16) / (21 / 16)  # = 28/21 = 4/3
    assert math.isclose(mean, 4 / 3, rel_tol=1e-15)
    assert math.isclose(mean, expected_mean, rel_tol=1e-15)
    assert math.isclose(error, math.sqrt(16 / 21), rel_tol=1e-15)
    chi2 = (1 - 4 / 3) ** 2 + (2 - 4 / 3) ** 2 / 4 + (4 - 4 / 3) ** 2 / 16  # = 2/3
    assert math.isclose(chi2_ndf, chi2 / 2, rel_tol=1e-14)
    assert math.isclose(chi2_ndf, 1 / 3, rel_tol=1e-14)


def test_weighted_mean_skips_unusable_entries() -> None:
    values = [1.0, 2.0, 4.0, 100.0, np.nan, 7.0, 9.0]
    errors = [1.0, 2.0, 4.0, 0.0, 1.0, np.nan, np.inf]
    mean, error, chi2_ndf = weighted_mean(values, errors)
    assert math.isclose(mean, 4 / 3, rel_tol=1e-15)
    assert math.isclose(error, math.sqrt(16 / 21), rel_tol=1e-15)
    assert math.isclose(chi2_ndf, 1 / 3, rel_tol=1e-14)


def test_weighted_mean_single_and_none() -> None:
    mean, error, chi2_ndf = weighted_mean([3.0], [0.5])
    assert (mean, error) == (3.0, 0.5) and math.isnan(chi2_ndf)
    assert all(math.isnan(x) for x in weighted_mean([1.0, 2.0], [0.0, np.nan]))
    assert all(math.isnan(x) for x in weighted_mean([], []))


def _left_to_right(x: np.ndarray, axis: int) -> np.ndarray:
    rows = np.moveaxis(x, axis, 0)
    return in_order(rows[0], rows[1:])


@pytest.mark.parametrize("shape", [(1, 512), (2, 512), (3, 7), (64, 512), (5, 1), (40, 3, 9)])
def test_sums_along_an_axis_are_strictly_left_to_right(shape) -> None:
    """The result must not depend on how the stream is cut into blocks, so sums along a
    pattern's channels (or a slow pattern's windows) add left to right whatever the
    array's shape: numpy's pairwise ``sum`` gives other bits on these magnitudes."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        x = rng.random(shape) * 10.0 ** rng.integers(-8, 8, shape)
        for axis in range(x.ndim):
            np.testing.assert_array_equal(last_along(x, axis), _left_to_right(x, axis))
        if x.ndim == 2:
            columns = sorted(rng.choice(shape[1], max(1, shape[1] // 2), replace=False).tolist())
            np.testing.assert_array_equal(column_sums(x, columns), _left_to_right(x[:, columns], 1))
