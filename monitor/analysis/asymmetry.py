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
