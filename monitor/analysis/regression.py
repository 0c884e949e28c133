"""Linear regression of detector asymmetries on helicity-correlated beam differences (pure).

Per good pattern the accumulator gives, for every beam variable ``i``, the pattern's
helicity-correlated difference ``dX_i = (mean X in + windows - mean X in - windows) / 2``
(JAPAN's ``diff_`` convention: half the difference of the two states' means, so a
detector with fractional sensitivity ``k`` per unit sees the asymmetry ``k * dX``), and
for every *target* ``j`` (a detector channel, or the sum of a group of channels) the half
difference and the half sum of its beam-normalised mean yields by helicity::

    u_j = (Y+ - Y-) / 2        w_j = (Y+ + Y-) / 2        (pattern asymmetry u_j / w_j)

Model, per minirun: ``u_j = w̄_j (A_j + sum_i k_ij dX_i) + noise``.  Least squares of ``u``
on ``dX`` over the minirun's patterns gives the slopes ``B = C^-1 C_xu`` (``C``: centred
sums of products), where ``C = C_xx - sum_p f_p N`` removes what the monitors' own
resolution adds to the spread of the measured differences: ``N`` is the per-window
covariance of the reconstructed variables (:meth:`mupnc.daq.beamline.BeamLine.noise_covariance`)
and ``f_p`` the pattern's ``(1/n+ + 1/n-)/4`` (a measured difference is the half difference
of two means).  Without it the slopes are attenuated by ``C_true / (C_true + noise)``
(errors in variables): with the shipped monitors (1 um) and 20 um of beam jitter per
window 0.5 % of every correction.  Then

* the regressed asymmetry ``A_j = (ū_j - sum_i B_ij dX̄_i) / w̄_j``: the intercept at zero
  beam difference, over the mean yield.  ``u`` and ``w`` are finite in every pattern, so
  this is defined at any count rate (a per-pattern ratio ``u / w`` is not at the
  muonic-atom rate); in the integrating regime it equals JAPAN's ``M_Y - A^T M_P`` to
  second order in the asymmetries;
* the asymmetry slopes ``k_ij = B_ij / w̄_j`` (fraction per unit of variable ``i``) with
  the covariance ``V_j = s_j^2 C^-1 C_xx C^-1 + (sum f)^2/n (C^-1 N b_j)(C^-1 N b_j)^T``
  over ``w̄_j^2``, the residual variance ``s_j^2 = (C_uu - 2 B^T C_xu + B^T C_xx B)_jj /
  (n - n_x - 1)`` (without resolution ``V_j = s_j^2 C^-1``, JAPAN's ``dA``);
* the regressed asymmetry's variance: ``(s_j^2 / n + dX̄^T V_j dX̄) / w̄_j^2``, the
  intercept's, which grows with the distance of the mean difference from zero (JAPAN's
  error leaves the second term out).

Which slopes correct which data: each minirun is corrected with its own slopes (as JAPAN
does); a run's regressed value is the weighted mean of its miniruns'.  The run's pooled
slopes (:meth:`CrossMoments.merge` of the miniruns) are what a shift looks at.

The regression is refused for a minirun whose beam differences are ill-conditioned: the
determinant of their correlation matrix below ``10**(-2 n_x)`` (JAPAN's test in
``LinReg_Bevington_Pebay.cc``) or a variable without spread; then every regressed value of
the minirun is NaN and :attr:`Regression.ill_conditioned` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mupnc.monitor.analysis.statistics import grouped_sums


@dataclass(eq=False)
class CrossMoments:
    """The sums a regression of ``m`` targets on ``v`` variables needs, over a stream of
    patterns, the same to the last bit however the stream is cut into blocks.

    A pattern enters only if every ``dX``, ``u`` and ``w`` of it is finite.  Values are
    shifted by the first such pattern's (deviations stay small, so the centred sums lose
    no precision); per pattern the terms ``[dx, du, w, dx dx^T, dx du^T, du^2, f]`` are summed
    like :class:`mupnc.monitor.analysis.statistics.SequentialMoments` does (groups of
    patterns counted from the stream's first, each in order).
    """

    variables: int
    targets: int
    rows: int  # patterns offered, used or not (positions in the stream)
    n: int  # patterns used
    shift: np.ndarray  # (v + m,) first used pattern's dX and u; empty until there is one
    sums: np.ndarray  # (terms,) complete groups
    open: np.ndarray  # (terms,) the group still filling

    @classmethod
    def empty(cls, variables: int, targets: int) -> CrossMoments:
        size = _terms(variables, targets)
        return cls(variables, targets, 0, 0, np.zeros(0), np.zeros(size), np.zeros(size))

    def add(self, dx: np.ndarray, u: np.ndarray, w: np.ndarray, noise: np.ndarray) -> None:
        """Append patterns: ``dx`` ``(p, v)``, ``u`` and ``w`` ``(p, m)``, and each pattern's
        resolution factor ``f`` ``(p,)`` (module docstring), in pattern order."""
        p, v, m = dx.shape[0], self.variables, self.targets
        if p == 0:
            return
        used = np.isfinite(dx).all(axis=1) & np.isfinite(u).all(axis=1) & np.isfinite(w).all(axis=1)
        if self.shift.size == 0 and used.any():
            first = int(np.argmax(used))
            self.shift = np.concatenate([dx[first], u[first]])
        shift_x, shift_u = (self.shift[:v], self.shift[v:]) if self.shift.size else (0.0, 0.0)
        d_x = np.where(used[:, None], dx - shift_x, 0.0)
        d_u = np.where(used[:, None], u - shift_u, 0.0)
        weight = np.where(used[:, None], w, 0.0)
        terms = np.concatenate(
            [
                d_x,
                d_u,
                weight,
                (d_x[:, :, None] * d_x[:, None, :]).reshape(p, v * v),
                (d_x[:, :, None] * d_u[:, None, :]).reshape(p, v * m),
                d_u * d_u,
                np.where(used, noise, 0.0)[:, None],
            ],
            axis=1,
        )
        self.sums, self.open = grouped_sums(self.sums, self.open, self.rows, terms)
        self.rows += p
        self.n += int(used.sum())

    def central(self) -> CentralMoments:
        """Means and centred sums of products of the patterns used."""
        v, m, n = self.variables, self.targets, self.n
        total = self.sums + self.open
        s_x, s_u, s_w, s_xx, s_xu, s_uu, s_f = np.split(total, np.cumsum(_widths(v, m))[:-1])
        shift_x, shift_u = (self.shift[:v], self.shift[v:]) if n else (np.zeros(v), np.zeros(m))
        if n == 0:
            return CentralMoments.empty(v, m)
        mean_dx, mean_du = s_x / n, s_u / n
        return CentralMoments(
            n=n,
            mean_x=shift_x + mean_dx,
            mean_u=shift_u + mean_du,
            mean_w=s_w / n,
            c_xx=s_xx.reshape(v, v) - n * np.outer(mean_dx, mean_dx),
            c_xu=s_xu.reshape(v, m) - n * np.outer(mean_dx, mean_du),
            c_uu=np.maximum(s_uu - n * mean_du * mean_du, 0.0),
            noise=float(s_f[0]),
        )

    def state(self) -> dict:
        """Plain JSON-able values (floats round-trip bit-exactly)."""
        return {
            "variables": self.variables,
            "targets": self.targets,
            "rows": self.rows,
            "n": self.n,
            "shift": self.shift.tolist(),
            "sums": self.sums.tolist(),
            "open": self.open.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> CrossMoments:
        """Inverse of :meth:`state`; ``ValueError`` if the shapes disagree."""
        v, m = int(state["variables"]), int(state["targets"])
        shift, sums, open_ = (
            np.array(state[k], dtype=np.float64) for k in ("shift", "sums", "open")
        )
        if (
            sums.shape != open_.shape
            or sums.shape != (_terms(v, m),)
            or shift.size not in (0, v + m)
        ):
            raise ValueError("regression moments state: shift, sums and open disagree in shape")
        return cls(v, m, int(state["rows"]), int(state["n"]), shift, sums, open_)

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality."""
        if not isinstance(other, CrossMoments):
            return NotImplemented
        return (self.variables, self.targets, self.rows, self.n) == (
            other.variables,
            other.targets,
            other.rows,
            other.n,
        ) and all(
            np.array_equal(getattr(self, k), getattr(other, k)) for k in ("shift", "sums", "open")
        )


def _widths(v: int, m: int) -> list[int]:
    return [v, m, m, v * v, v * m, m, 1]


def _terms(v: int, m: int) -> int:
    return sum(_widths(v, m))


@dataclass(frozen=True)
class CentralMoments:
    """Count, means and centred sums of products (``c_uu``: the diagonal only); ``noise``:
    the sum of the patterns' resolution factors ``f``."""

    n: int
    mean_x: np.ndarray  # (v,)
    mean_u: np.ndarray  # (m,)
    mean_w: np.ndarray  # (m,)
    c_xx: np.ndarray  # (v, v)
    c_xu: np.ndarray  # (v, m)
    c_uu: np.ndarray  # (m,)
    noise: float = 0.0

    @classmethod
    def empty(cls, v: int, m: int) -> CentralMoments:
        return cls(
            0,
            np.zeros(v),
            np.zeros(m),
            np.zeros(m),
            np.zeros((v, v)),
            np.zeros((v, m)),
            np.zeros(m),
        )

    def merge(self, other: CentralMoments) -> CentralMoments:
        """Moments of both pattern sets (Chan/Pébay: ``C = C_A + C_B + n_A n_B / n d d^T``
        with ``d = mean_B - mean_A``; JAPAN's own merge had the sign of ``d`` and an integer
        division wrong)."""
        n = self.n + other.n
        if self.n == 0 or other.n == 0:
            return other if self.n == 0 else self
        f = self.n * other.n / n
        d_x, d_u = other.mean_x - self.mean_x, other.mean_u - self.mean_u
        share = other.n / n
        return CentralMoments(
            n=n,
            mean_x=self.mean_x + d_x * share,
            mean_u=self.mean_u + d_u * share,
            mean_w=self.mean_w + (other.mean_w - self.mean_w) * share,
            c_xx=self.c_xx + other.c_xx + f * np.outer(d_x, d_x),
            c_xu=self.c_xu + other.c_xu + f * np.outer(d_x, d_u),
            c_uu=self.c_uu + other.c_uu + f * d_u * d_u,
            noise=self.noise + other.noise,
        )

    def select(self, variables: list[int]) -> CentralMoments:
        """The same moments for a subset of the variables (by index)."""
        idx = np.asarray(variables, dtype=np.int64)
        return CentralMoments(
            self.n,
            self.mean_x[idx],
            self.mean_u,
            self.mean_w,
            self.c_xx[np.ix_(idx, idx)],
            self.c_xu[idx],
            self.c_uu,
            self.noise,
        )


@dataclass(frozen=True)
class Regression:
    """One regression's outcome; asymmetries and slopes are measured (not divided by P).

    ``asymmetry``/``error`` ``(m,)``: regressed ``u/w`` per target; ``raw``/``raw_error``:
    the same without the correction (``ū / w̄``, ``s_u / (sqrt(n) w̄)``); ``slopes``/
    ``slope_errors`` ``(v, m)``: fraction per unit of each variable; ``ill_conditioned``:
    why the regression was refused (then every value is NaN), else empty."""

    n: int
    asymmetry: np.ndarray
    error: np.ndarray
    raw: np.ndarray
    raw_error: np.ndarray
    slopes: np.ndarray
    slope_errors: np.ndarray
    condition: float  # determinant of the variables' correlation matrix
    ill_conditioned: str = ""


def regress(moments: CentralMoments, resolution: np.ndarray | None = None) -> Regression:
    """Least squares of the targets' ``u`` on the beam differences (module docstring);
    ``resolution``: the per-window noise covariance ``N`` of the variables (None: none)."""
    n, v, m = moments.n, moments.mean_x.size, moments.mean_u.size
    nan_m, nan_vm = np.full(m, math.nan), np.full((v, m), math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(moments.mean_w != 0, moments.mean_w, np.nan)
        raw = moments.mean_u / scale
        raw_error = np.sqrt(moments.c_uu / max(n - 1, 1) / n) / np.abs(scale) if n > 1 else nan_m
    if v == 0:
        return Regression(n, raw, raw_error, raw, raw_error, nan_vm, nan_vm, 1.0)
    noise = np.zeros((v, v)) if resolution is None else np.asarray(resolution, dtype=np.float64)
    spread = moments.c_xx - moments.noise * noise
    why, det = _conditioning(n, spread)
    if why:
        return Regression(n, nan_m, nan_m, raw, raw_error, nan_vm, nan_vm, det, why)
    inverse = np.linalg.inv(spread)
    slopes_u = inverse @ moments.c_xu  # (v, m)
    explained = np.einsum("vm,vw,wm->m", slopes_u, moments.c_xx, slopes_u)
    residual = moments.c_uu - 2 * np.einsum("vm,vm->m", slopes_u, moments.c_xu) + explained
    s2 = np.maximum(residual, 0.0) / (n - v - 1)
    # covariance of the slopes: s^2 C^-1 C_xx C^-1 (the sandwich: plain C^-1 without noise)
    # plus the spread of the noise's own sum of squares, (sum f)^2 / n (C^-1 N b)(C^-1 N b)^T
    sandwich = inverse @ moments.c_xx @ inverse
    lever = inverse @ noise @ slopes_u  # (v, m)
    extra = moments.noise**2 / n
    slope_variance = np.outer(np.diag(sandwich), s2) + extra * lever**2
    mean_x = moments.mean_x
    intercept_variance = s2 * (1.0 / n + mean_x @ sandwich @ mean_x) + extra * (mean_x @ lever) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        asymmetry = (moments.mean_u - mean_x @ slopes_u) / scale
        error = np.sqrt(intercept_variance) / np.abs(scale)
        slopes = slopes_u / scale
        slope_errors = np.sqrt(slope_variance) / np.abs(scale)
    return Regression(n, asymmetry, error, raw, raw_error, slopes, slope_errors, det)


def _conditioning(n: int, c_xx: np.ndarray) -> tuple[str, float]:
    """Why the variables cannot be regressed on (empty if they can) and the determinant of
    their correlation matrix, from their centred sums of products ``c_xx``."""
    v = c_xx.shape[0]
    if n <= v + 1:
        return f"{n} patterns for {v} variables (needs at least {v + 2})", math.nan
    spread = np.sqrt(np.maximum(np.diag(c_xx), 0.0))
    if not (spread > 0).all():
        return "a beam variable has no spread beyond the monitors' resolution", 0.0
    det = float(np.linalg.det(c_xx / np.outer(spread, spread)))
    if not det >= 10.0 ** (-2 * v):
        return f"beam differences nearly degenerate (correlation determinant {det:.1e})", det
    return "", det
