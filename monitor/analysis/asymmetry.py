"""Pattern asymmetries from decoded windows (pure numpy; no I/O).

Per pattern, with yields normalized by the beam monitor, ``Y = counts / beam_monitor``,
and ``Y+`` / ``Y-`` the mean yield of the pattern's helicity +1 (right-handed, spin along
momentum) and -1 windows:

* A_LR per channel: ``A = (Y+ - Y-) / (Y+ + Y-)`` (:func:`yield_asymmetry`);
* A_FB by the cross ratio of forward (F) and backward (B) detectors,
  ``r = sqrt(B+ F- / (B- F+))``, ``A = (r - 1) / (r + 1)`` (:func:`cross_ratio_asymmetry`).
  This equals P * A_FB with A_FB = [N(theta > pi/2) - N(theta < pi/2)] / sum, and cancels
  detector efficiencies and the luminosity difference between spin states;
* beam charge asymmetry ``A_Q = (Q+ - Q-) / (Q+ + Q-)`` of the beam-monitor integrals;
* null (JAPAN "alternate") asymmetries: the same formulas with the helicity replaced by a
  sign that depends only on the window's place in the pattern (:func:`alternate_signs`),
  orthogonal to the pattern shape, so they measure 0 unless something other than the
  helicity (drifts, phase-dependent pick-up) differs between the windows.

Means rather than sums make patterns with unequal numbers of +/- windows (slow reversal
schemes) unbiased; for balanced patterns both are the same.  The ``pattern_*`` helpers
take a *pattern block*: arrays shaped ``(patterns, pattern_size, ...)``.
"""

from __future__ import annotations

import numpy as np


def alternate_signs(size: int) -> dict[str, np.ndarray]:
    """Null-asymmetry window signs for a pattern of ``size`` windows (JAPAN's alternates).

    ``null_half``: first half minus second half; ``null_even_odd``: even minus odd windows
    (only for patterns longer than a pair, where it would repeat ``null_half``).  For
    quartets, octets and Thue-Morse-64 both are orthogonal to the pattern shape; for a
    pair ``null_half`` is the shape itself taken without the pattern polarity, which
    averages to 0 because the polarity is random.
    """
    if size < 2 or size % 2:
        raise ValueError(f"a pattern needs an even number of windows, got {size}")
    window = np.arange(size)
    signs = {"null_half": np.where(window < size // 2, 1, -1).astype(np.int8)}
    if size > 2:
        signs["null_even_odd"] = np.where(window % 2 == 0, 1, -1).astype(np.int8)
    return signs


def yield_asymmetry(plus: np.ndarray, minus: np.ndarray) -> np.ndarray:
    """``(plus - minus) / (plus + minus)`` of mean yields; NaN where both are zero."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (plus - minus) / (plus + minus)


def cross_ratio_asymmetry(
    f_plus: np.ndarray, f_minus: np.ndarray, b_plus: np.ndarray, b_minus: np.ndarray
) -> np.ndarray:
    """Cross-ratio asymmetry from forward/backward yields by helicity (NaN if one is 0).

    Sums or means give the same result: window counts per helicity cancel in the ratio.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(b_plus * f_minus / (b_minus * f_plus))
        return (r - 1) / (r + 1)


def helicity_sums(values: np.ndarray, helicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums over each pattern's +1 and -1 windows; ``values`` is (p, s) or (p, s, c)."""
    plus = helicity > 0
    if values.ndim == 3:
        plus = plus[:, :, None]
    return np.where(plus, values, 0).sum(axis=1), np.where(plus, 0, values).sum(axis=1)


def helicity_means(values: np.ndarray, helicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Means over each pattern's +1 and -1 windows; ``values`` is (p, s) or (p, s, c)."""
    plus, minus = helicity_sums(values, helicity)
    n_plus = (helicity > 0).sum(axis=1)
    n_minus = helicity.shape[1] - n_plus
    if values.ndim == 3:
        n_plus, n_minus = n_plus[:, None], n_minus[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return plus / n_plus, minus / n_minus


def pattern_yield_asymmetry(
    counts: np.ndarray, beam_monitor: np.ndarray, helicity: np.ndarray
) -> np.ndarray:
    """A_LR-type asymmetry of normalized yields, per pattern and channel: shape (p, c)."""
    return yield_asymmetry(*helicity_means(counts / beam_monitor[:, :, None], helicity))


def pattern_cross_ratio_asymmetry(
    forward: np.ndarray, backward: np.ndarray, beam_monitor: np.ndarray, helicity: np.ndarray
) -> np.ndarray:
    """Cross-ratio asymmetry per pattern (NaN where a yield is zero): shape (p,)."""
    f_plus, f_minus = helicity_sums(forward / beam_monitor, helicity)
    b_plus, b_minus = helicity_sums(backward / beam_monitor, helicity)
    return cross_ratio_asymmetry(f_plus, f_minus, b_plus, b_minus)


def pattern_charge_asymmetry(beam_monitor: np.ndarray, helicity: np.ndarray) -> np.ndarray:
    """Beam charge asymmetry per pattern: shape (p,)."""
    return yield_asymmetry(*helicity_means(beam_monitor, helicity))


def counted_yield_asymmetry(
    n_plus: np.ndarray, n_minus: np.ndarray, q_plus: float, q_minus: float
) -> tuple[np.ndarray, np.ndarray]:
    """Yield asymmetry of counts summed per spin state, with its Poisson error.

    ``Y+- = N+- / Q+-`` (counts over beam-monitor integral, muons), ``A = (Y+ - Y-) /
    (Y+ + Y-)``, ``sigma_A = 2 Y+ Y- / (Y+ + Y-)**2 * sqrt(1/N+ + 1/N-)``  (``(1 - A**2)/2 *
    sqrt(1/N+ + 1/N-)``; the beam-monitor integrals are taken as exact: a counting run has
    far more muons than counts).  Undefined (NaN value and error) unless both spin states
    have counts and beam.
    """
    n_plus, n_minus = np.asarray(n_plus, np.float64), np.asarray(n_minus, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y_plus, y_minus = n_plus / q_plus, n_minus / q_minus
        a = (y_plus - y_minus) / (y_plus + y_minus)
        error = (1.0 - a * a) / 2.0 * np.sqrt(1.0 / n_plus + 1.0 / n_minus)
    defined = (n_plus > 0) & (n_minus > 0) & (q_plus > 0) & (q_minus > 0)
    return np.where(defined, a, np.nan), np.where(defined, error, np.nan)


def counted_cross_ratio_asymmetry(
    f_plus: float, f_minus: float, b_plus: float, b_minus: float
) -> tuple[float, float]:
    """Cross-ratio asymmetry of forward/backward counts summed per spin state, with its
    Poisson error: ``r = sqrt(B+ F- / (B- F+))``, ``A = (r - 1) / (r + 1)``, ``sigma_A =
    (1 - A**2) / 4 * sqrt(1/F+ + 1/F- + 1/B+ + 1/B-)`` (error propagation of ``ln r``).
    Beam intensity and detector efficiencies cancel.  Undefined (NaN, NaN) unless all four
    sums are positive.
    """
    counts = np.array([f_plus, f_minus, b_plus, b_minus], dtype=np.float64)
    if not (counts > 0).all():
        return float("nan"), float("nan")
    r = float(np.sqrt(b_plus * f_minus / (b_minus * f_plus)))
    a = (r - 1.0) / (r + 1.0)
    return a, (1.0 - a * a) / 4.0 * float(np.sqrt((1.0 / counts).sum()))
