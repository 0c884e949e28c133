"""Pattern asymmetries from decoded windows (pure numpy; no I/O).

Per pattern, with yields normalized by the beam monitor, ``Y = counts / beam_monitor``:

* A_LR per channel: ``A = (Y+ - Y-) / (Y+ + Y-)`` where ``Y+`` sums the pattern's
  helicity +1 windows (right-handed, spin along momentum) and ``Y-`` the -1 ones;
* A_FB by the cross ratio of forward (F) and backward (B) detectors,
  ``r = sqrt(B+ F- / (B- F+))``, ``A = (r - 1) / (r + 1)``.  This equals P * A_FB with
  A_FB = [N(theta > pi/2) - N(theta < pi/2)] / sum, and cancels detector efficiencies
  and the luminosity difference between spin states;
* beam charge asymmetry ``A_Q = (Q+ - Q-) / (Q+ + Q-)`` of the beam-monitor integrals.

All functions take a *pattern block*: arrays shaped ``(patterns, pattern_size, ...)``.
"""

from __future__ import annotations

import numpy as np


def helicity_sums(values: np.ndarray, helicity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums over each pattern's +1 and -1 windows; ``values`` is (p, s) or (p, s, c)."""
    plus = helicity > 0
    if values.ndim == 3:
        plus = plus[:, :, None]
    return np.where(plus, values, 0).sum(axis=1), np.where(plus, 0, values).sum(axis=1)


def pattern_yield_asymmetry(
    counts: np.ndarray, beam_monitor: np.ndarray, helicity: np.ndarray
) -> np.ndarray:
    """A_LR-type asymmetry of normalized yields, per pattern and channel: shape (p, c)."""
    yields = counts / beam_monitor[:, :, None]
    plus, minus = helicity_sums(yields, helicity)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (plus - minus) / (plus + minus)


def pattern_cross_ratio_asymmetry(
    forward: np.ndarray, backward: np.ndarray, beam_monitor: np.ndarray, helicity: np.ndarray
) -> np.ndarray:
    """Cross-ratio asymmetry per pattern (NaN where a yield is zero): shape (p,)."""
    f_plus, f_minus = helicity_sums(forward / beam_monitor, helicity)
    b_plus, b_minus = helicity_sums(backward / beam_monitor, helicity)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(b_plus * f_minus / (b_minus * f_plus))
        return (r - 1) / (r + 1)


def pattern_charge_asymmetry(beam_monitor: np.ndarray, helicity: np.ndarray) -> np.ndarray:
    """Beam charge asymmetry per pattern: shape (p,)."""
    plus, minus = helicity_sums(beam_monitor, helicity)
    return (plus - minus) / (plus + minus)
