"""Beam modulation ("dithering"): detector sensitivities from the coils' cycles (pure).

In a modulation cycle (windows flagged :data:`mupnc.daq.blocks.FLAG_MODULATION`, whose
patterns the accumulator cuts from the main analysis) the coils are driven one at a time:
in a window at most one coil's current is non-zero.  Per cycle and coil, over the windows
where that coil alone is driven, least squares of one regressor with intercept (the coil
current ``I``, mA) gives

* ``H[coil, v] = dX_v / dI``: each beam variable at the target (from the beam position
  monitors, :meth:`mupnc.daq.beamline.BeamLine.at_target`; unit of the variable per mA);
* ``D[coil, j] = (dY_j / dI) / Y_j(0)``: each target's beam-normalised yield
  ``Y = counts / beam monitor`` (a detector channel, or the sum of a combined group's:
  the scatter sum, the forward and the backward sums) as a fractional change per mA,
  relative to the fitted yield at zero current (the undriven beam; for a drive symmetric
  about zero, the mean yield).

Errors come from the residuals: per coil the slopes ``b = S_cr / S_cc`` of all responses
``r = (X, Y)`` have the covariance ``R / S_cc``, with ``R`` the residual covariance of the
responses (``(S_rr - S_cc b b^T) / (n - 2)``).  Its X-Y block matters: beam jitter moves the
beam variables and, through the sensitivities, the yields, so the errors of ``H`` and ``D``
of one coil are correlated; in ``beta`` that common part cancels, and the propagation keeps
it.  The normalisation ``Y(0)`` is taken as exact (its relative error is that of the slope
times the yield change at the drive amplitude, ~1e-2 of it).

The sensitivities ``beta = H^+ D`` (``(variables, targets)``: fractional yield change per
unit of each variable, the same units as the regression's slopes,
:mod:`mupnc.monitor.analysis.regression`) solve ``H beta = D`` (least squares if there are
more live coils than variables).  Their errors are propagated linearly, to first order in
the errors of ``H`` and ``D``: ``d beta_j = H^+ (dD_j - dH beta_j) + (H^T H)^-1 dH^T r_j``
(``r_j = D_j - H beta_j``, zero for a square ``H``), coils independent of each other (their
windows differ), each coil's ``(H row, D_j)`` with the covariance above.  Second-order terms
(relative errors of ``H`` squared) are left out; they matter only near a singular ``H``,
which is refused.

A cycle is refused (NaN sensitivities and a reason) when a coil has fewer than
:data:`MIN_COIL_WINDOWS` windows or no spread of its current (a cycle cut by the end of the
run), when fewer live coils than variables remain, or when ``H`` is ill-conditioned: the
determinant of the correlation-like matrix of its columns (``H^T H`` with unit diagonal,
independent of the variables' units) below ``10**(-2 v)`` (JAPAN's test for the
regression), or its weakest direction within :data:`MIN_SIGNIFICANCE` errors of zero (the
smallest singular value of ``H`` with each column over its RMS error: two coils pushing the
beam the same way, measured with noise, pass the first test but not this one, and there
the first-order errors would not hold).  A coil is *dead* (stuck: its current shows but
the beam does not follow) when no element of its ``H`` row is beyond :data:`DEAD_SIGMA`
errors of zero; dead coils are reported and left out of the solution.

The run's sensitivities are the mean of the usable cycles', each weighted by the rows it
fitted, with the covariance ``sum n_c^2 C_c / (sum n_c)^2`` (per target, the cycles' full
covariance matrices of ``beta_j``): weights fixed by the schedule, not by each cycle's
estimated errors, which are correlated with the values they would weigh. The
dithering-corrected asymmetry (:func:`dithered`) is ``A_dit = A_raw - sum_v beta_v dX_v``
per target, with ``dX`` the mean helicity-correlated beam differences (JAPAN's ``diff_``, in
the variables' units) over the same patterns as ``A_raw``; its error is that of ``A_raw``
and that of ``beta`` added in quadrature (``dX^T cov(beta) dX``; ``dX``'s own error is in
``A_raw``'s spread).
That is conservative: ``A_raw``'s spread holds the beam noise the correction takes out
(dithered pulls of width 0.94 in the simulator at 1e10 muons/s, 20 um jitter).
The combined asymmetry is the scatter sum's (A_LR) or the cross ratio of the corrected
forward and backward sums (A_FB), as :func:`mupnc.monitor.analysis.beam_results.regressed`
combines.  The combined sensitivities are the scatter sum's, or (A_FB) those of the target
:data:`CROSS_RATIO`, ``sqrt(Y_backward / Y_forward)``, whose fractional change is
``(D_backward - D_forward) / 2``: fitted as a target of its own, its sensitivities
``~ (beta_backward - beta_forward) / 2`` get errors that keep the forward and backward
ones' correlation (the beam jitter that ``H`` measures moves both; treated as independent
they were twice too large).  The A_FB combined error is the raw parts' (forward and
backward counts independent) and the cross-ratio target's correction in quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from mupnc.monitor.analysis.asymmetry import cross_ratio_asymmetry
from mupnc.monitor.analysis.beam_results import COMBINED
from mupnc.monitor.analysis.regression import CentralMoments
from mupnc.monitor.analysis.statistics import (
    Measurement,
    MeasurementTable,
    grouped_sums,
    shared_keys,
)

MIN_COIL_WINDOWS = 10
"""Windows a coil needs in a cycle (a slope with intercept needs 3; 10 keep its error's own
uncertainty below ~25 %)."""
DEAD_SIGMA = 3.0
"""A coil is dead when no element of its ``H`` row is beyond this many errors of zero."""
MIN_SIGNIFICANCE = 10.0
"""``H``'s weakest direction must stand this many errors out of zero (then the first-order
errors of ``beta`` hold to ~10 %)."""


CROSS_RATIO = "cross_ratio"
"""The A_FB target ``sqrt(Y_backward / Y_forward)`` of the summed group yields: its
fractional change is ``(D_backward - D_forward) / 2``, the combined asymmetry's, so its
sensitivities carry the combined's errors with the forward and backward ones' correlation
(the beam jitter measured with ``H`` moves both)."""
AFB_GROUPS = ("forward", "backward")


@dataclass(frozen=True)
class Layout:
    """Names of what the modulation analysis sees: ``coils`` (the channel map's coil
    channels, in order), beam ``variables``, detector ``channels`` and combined ``groups``
    (``scatter``, or ``forward`` and ``backward``); the targets are channels, groups and,
    for A_FB, :data:`CROSS_RATIO`."""

    coils: tuple[str, ...]
    variables: tuple[str, ...]
    channels: tuple[str, ...]
    groups: tuple[str, ...]

    @property
    def targets(self) -> tuple[str, ...]:
        cross = (CROSS_RATIO,) if self.groups == AFB_GROUPS else ()
        return self.channels + self.groups + cross


# -- sums ------------------------------------------------------------------------------------


def _widths(v: int, m: int) -> list[int]:
    """Terms per window: dc, dx, dy, dc^2, dc dx, dc dy, dx dx^T (upper), dx dy^T, dy^2."""
    return [1, v, m, 1, v, m, v * (v + 1) // 2, v * m, m]


@dataclass(eq=False)
class _Cell:
    """One coil's windows in one cycle: grouped sums like :class:`CrossMoments`'."""

    n: int
    shift: np.ndarray  # (1 + v + m,) the first window's current, beam variables, yields
    sums: np.ndarray  # (terms,) complete groups
    open: np.ndarray  # (terms,) the group still filling


@dataclass(eq=False)
class ModulationSums:
    """The sums of every (cycle, coil) a dithering analysis needs, over a stream of
    modulation windows, the same to the last bit however the stream is cut into blocks.

    A window enters the cell of its cycle and of its one driven coil (the only non-zero
    current); windows with no coil or several coils driven, or a non-finite value, are
    counted in ``windows`` but enter no cell.  Each cell shifts its values by its first
    window's and sums the terms ``[dc, dx, dy, dc^2, dc dx, dc dy, dx dx^T, dx dy^T, dy^2]``
    in groups counted from its first window (:func:`grouped_sums`), so a cell is a pure
    function of its own windows in order."""

    coils: int
    variables: int
    targets: int
    windows: int = 0  # modulation windows offered
    cells: dict[tuple[int, int], _Cell] = field(default_factory=dict)

    @classmethod
    def empty(cls, coils: int, variables: int, targets: int) -> ModulationSums:
        return cls(coils, variables, targets)

    @property
    def terms(self) -> int:
        return sum(_widths(self.variables, self.targets))

    def add(
        self, cycle: np.ndarray, current: np.ndarray, beam: np.ndarray, yields: np.ndarray
    ) -> None:
        """Append windows in stream order: ``cycle`` ``(n,)`` their cycle index, ``current``
        ``(n, coils)`` mA, ``beam`` ``(n, variables)`` and ``yields`` ``(n, targets)``."""
        n = int(np.asarray(cycle).size)
        if n == 0:
            return
        self.windows += n
        driven = current != 0
        one = driven.sum(axis=1) == 1
        used = one & np.isfinite(beam).all(axis=1) & np.isfinite(yields).all(axis=1)
        used &= np.isfinite(current).all(axis=1)
        if not used.any():
            return
        coil = np.argmax(driven, axis=1)
        rows = np.flatnonzero(used)
        keys = np.asarray(cycle, dtype=np.int64)[rows] * (self.coils + 1) + coil[rows]
        _, first = np.unique(keys, return_index=True)
        for key in keys[np.sort(first)].tolist():  # cells in order of their first window
            where = rows[keys == key]
            c = int(key % (self.coils + 1))
            values = np.column_stack([current[where, c], beam[where], yields[where]])
            self._append(int(key // (self.coils + 1)), c, values)

    def _append(self, cycle: int, coil: int, values: np.ndarray) -> None:
        v, m = self.variables, self.targets
        cell = self.cells.get((cycle, coil))
        if cell is None:
            size = self.terms
            cell = _Cell(0, values[0].copy(), np.zeros(size), np.zeros(size))
            self.cells[(cycle, coil)] = cell
        d = values - cell.shift
        p = d.shape[0]
        dc, dx, dy = d[:, :1], d[:, 1 : 1 + v], d[:, 1 + v :]
        upper = np.triu_indices(v)
        terms = np.concatenate(
            [
                dc,
                dx,
                dy,
                dc * dc,
                dc * dx,
                dc * dy,
                (dx[:, :, None] * dx[:, None, :])[:, upper[0], upper[1]],
                (dx[:, :, None] * dy[:, None, :]).reshape(p, v * m),
                dy * dy,
            ],
            axis=1,
        )
        cell.sums, cell.open = grouped_sums(cell.sums, cell.open, cell.n, terms)
        cell.n += p

    def moments(self) -> dict[int, CycleMoments]:
        """Per cycle (in index order), each coil's means and centred sums of products."""
        k, v, m = self.coils, self.variables, self.targets
        out: dict[int, CycleMoments] = {}
        for cycle in sorted({c for c, _ in self.cells}):
            moments = CycleMoments.empty(k, v, m)
            for coil in range(k):
                cell = self.cells.get((cycle, coil))
                if cell is not None:
                    moments = moments.with_coil(coil, _central(cell, v, m))
            out[cycle] = moments
        return out

    def state(self) -> dict:
        """Plain JSON-able values (floats round-trip bit-exactly)."""
        return {
            "coils": self.coils,
            "variables": self.variables,
            "targets": self.targets,
            "windows": self.windows,
            "cells": [
                {
                    "cycle": cycle,
                    "coil": coil,
                    "n": cell.n,
                    "shift": cell.shift.tolist(),
                    "sums": cell.sums.tolist(),
                    "open": cell.open.tolist(),
                }
                for (cycle, coil), cell in sorted(self.cells.items())
            ],
        }

    @classmethod
    def from_state(cls, state: dict) -> ModulationSums:
        """Inverse of :meth:`state`; ``ValueError`` if the shapes disagree."""
        out = cls(int(state["coils"]), int(state["variables"]), int(state["targets"]))
        out.windows = int(state["windows"])
        for entry in state["cells"]:
            shift, sums, open_ = (
                np.array(entry[k], dtype=np.float64) for k in ("shift", "sums", "open")
            )
            coil = int(entry["coil"])
            if (
                not 0 <= coil < out.coils
                or shift.shape != (1 + out.variables + out.targets,)
                or sums.shape != open_.shape
                or sums.shape != (out.terms,)
            ):
                raise ValueError("modulation sums state: a cell disagrees in shape")
            out.cells[(int(entry["cycle"]), coil)] = _Cell(int(entry["n"]), shift, sums, open_)
        return out

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality."""
        if not isinstance(other, ModulationSums):
            return NotImplemented
        same = (self.coils, self.variables, self.targets, self.windows) == (
            other.coils,
            other.variables,
            other.targets,
            other.windows,
        )
        if not same or self.cells.keys() != other.cells.keys():
            return False
        return all(
            a.n == b.n and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in _ARRAYS)
            for a, b in ((self.cells[key], other.cells[key]) for key in self.cells)
        )


_ARRAYS = ("shift", "sums", "open")


@dataclass(frozen=True)
class _CoilMoments:
    n: int
    mean_c: float
    mean_x: np.ndarray
    mean_y: np.ndarray
    s_cc: float
    s_cx: np.ndarray
    s_cy: np.ndarray
    s_xx: np.ndarray
    s_xy: np.ndarray
    s_yy: np.ndarray


def _central(cell: _Cell, v: int, m: int) -> _CoilMoments:
    n = cell.n
    total = cell.sums + cell.open
    t_c, t_x, t_y, t_cc, t_cx, t_cy, t_xx, t_xy, t_yy = np.split(
        total, np.cumsum(_widths(v, m))[:-1]
    )
    mc, mx, my = t_c[0] / n, t_x / n, t_y / n
    xx = np.zeros((v, v))
    xx[np.triu_indices(v)] = t_xx
    xx = xx + np.triu(xx, 1).T
    return _CoilMoments(
        n=n,
        mean_c=float(cell.shift[0] + mc),
        mean_x=cell.shift[1 : 1 + v] + mx,
        mean_y=cell.shift[1 + v :] + my,
        s_cc=float(t_cc[0] - n * mc * mc),
        s_cx=t_cx - n * mc * mx,
        s_cy=t_cy - n * mc * my,
        s_xx=xx - n * np.outer(mx, mx),
        s_xy=t_xy.reshape(v, m) - n * np.outer(mx, my),
        s_yy=t_yy - n * my * my,
    )


@dataclass(frozen=True)
class CycleMoments:
    """One cycle's means and centred sums of products, per coil (index 0: the coils):
    current ``c``, beam variables ``x`` and target yields ``y`` (``s_yy``: diagonal only)."""

    n: np.ndarray  # (k,) int
    mean_c: np.ndarray  # (k,)
    mean_x: np.ndarray  # (k, v)
    mean_y: np.ndarray  # (k, m)
    s_cc: np.ndarray  # (k,)
    s_cx: np.ndarray  # (k, v)
    s_cy: np.ndarray  # (k, m)
    s_xx: np.ndarray  # (k, v, v)
    s_xy: np.ndarray  # (k, v, m)
    s_yy: np.ndarray  # (k, m)

    @classmethod
    def empty(cls, k: int, v: int, m: int) -> CycleMoments:
        return cls(
            np.zeros(k, dtype=np.int64),
            np.zeros(k),
            np.zeros((k, v)),
            np.zeros((k, m)),
            np.zeros(k),
            np.zeros((k, v)),
            np.zeros((k, m)),
            np.zeros((k, v, v)),
            np.zeros((k, v, m)),
            np.zeros((k, m)),
        )

    def with_coil(self, coil: int, c: _CoilMoments) -> CycleMoments:
        arrays = {name: getattr(self, name).copy() for name in _MOMENTS}
        for name in _MOMENTS:
            arrays[name][coil] = getattr(c, name)
        return CycleMoments(**arrays)

    def merge(self, other: CycleMoments) -> CycleMoments:
        """Moments of both window sets, coil by coil (Chan/Pébay, as
        :meth:`mupnc.monitor.analysis.regression.CentralMoments.merge`)."""
        n = self.n + other.n
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n > 0, other.n / np.maximum(n, 1), 0.0)
            f = np.where(n > 0, self.n * other.n / np.maximum(n, 1), 0.0)
        d_c = other.mean_c - self.mean_c
        d_x, d_y = other.mean_x - self.mean_x, other.mean_y - self.mean_y
        return CycleMoments(
            n=n,
            mean_c=self.mean_c + d_c * share,
            mean_x=self.mean_x + d_x * share[:, None],
            mean_y=self.mean_y + d_y * share[:, None],
            s_cc=self.s_cc + other.s_cc + f * d_c * d_c,
            s_cx=self.s_cx + other.s_cx + (f * d_c)[:, None] * d_x,
            s_cy=self.s_cy + other.s_cy + (f * d_c)[:, None] * d_y,
            s_xx=self.s_xx + other.s_xx + f[:, None, None] * d_x[:, :, None] * d_x[:, None, :],
            s_xy=self.s_xy + other.s_xy + f[:, None, None] * d_x[:, :, None] * d_y[:, None, :],
            s_yy=self.s_yy + other.s_yy + f[:, None] * d_y * d_y,
        )


_MOMENTS = ("n", "mean_c", "mean_x", "mean_y", "s_cc", "s_cx", "s_cy", "s_xx", "s_xy", "s_yy")


def merge_cycles(a: dict[int, CycleMoments], b: dict[int, CycleMoments]) -> dict[int, CycleMoments]:
    """The cycles of both (a cycle in both: its moments merged), in index order."""
    out = dict(a)
    for cycle, moments in b.items():
        out[cycle] = out[cycle].merge(moments) if cycle in out else moments
    return dict(sorted(out.items()))


# -- one cycle -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleFit:
    """One cycle's least squares (arrays; index order of :class:`Layout`).

    ``h``/``h_error`` ``(coils, variables)``, ``d``/``d_error`` ``(coils, targets)``,
    ``beta``/``beta_error`` ``(variables, targets)``, ``beta_covariance``
    ``(targets, variables, variables)``; ``dead``: indices of the dead coils; ``skipped``:
    why ``beta`` was refused (then NaN), else empty; ``condition``: the determinant of
    the live ``H``'s column-correlation matrix."""

    cycle: int
    windows: np.ndarray
    h: np.ndarray
    h_error: np.ndarray
    d: np.ndarray
    d_error: np.ndarray
    beta: np.ndarray
    beta_error: np.ndarray
    beta_covariance: np.ndarray
    dead: tuple[int, ...]
    condition: float
    skipped: str = ""


def fit_cycle(
    cycle: int,
    moments: CycleMoments,
    layout: Layout,
    min_windows: int = MIN_COIL_WINDOWS,
) -> CycleFit:
    """``H``, ``D`` and the sensitivities of one cycle (module docstring)."""
    k, v, m = len(layout.coils), len(layout.variables), len(layout.targets)
    n = moments.n
    with np.errstate(invalid="ignore", divide="ignore"):
        s_cc = np.where(moments.s_cc > 0, moments.s_cc, np.nan)
        b_x = moments.s_cx / s_cc[:, None]  # (k, v)
        b_y = moments.s_cy / s_cc[:, None]  # (k, m)
        dof = np.where(n > 2, n - 2, np.nan).astype(np.float64)
        r_xx = (moments.s_xx - s_cc[:, None, None] * b_x[:, :, None] * b_x[:, None, :]) / dof[
            :, None, None
        ]
        r_xy = (moments.s_xy - s_cc[:, None, None] * b_x[:, :, None] * b_y[:, None, :]) / dof[
            :, None, None
        ]
        r_yy = np.maximum(moments.s_yy - s_cc[:, None] * b_y * b_y, 0.0) / dof[:, None]
        y0 = moments.mean_y - b_y * moments.mean_c[:, None]  # fitted yield at zero current
        scale = np.where(y0 != 0, y0, np.nan)
        h, d = b_x, b_y / scale
        cov_xx = r_xx / s_cc[:, None, None]  # (k, v, v)
        cov_xd = r_xy / s_cc[:, None, None] / scale[:, None, :]  # (k, v, m)
        var_d = r_yy / s_cc[:, None] / scale**2  # (k, m)
        h_error = np.sqrt(np.maximum(np.diagonal(cov_xx, axis1=1, axis2=2), 0.0))
        d_error = np.sqrt(var_d)
        significance = np.abs(h) / h_error
    nan_b, nan_cov = np.full((v, m), math.nan), np.full((m, v, v), math.nan)

    def refused(why: str, dead: tuple[int, ...] = (), det: float = math.nan) -> CycleFit:
        return CycleFit(
            cycle, n.copy(), h, h_error, d, d_error, nan_b, nan_b, nan_cov, dead, det, why
        )

    if v == 0:
        return refused("no beam variable is measured (the channel map has no monitors)")
    few = [
        f"{layout.coils[c]} {int(n[c])} windows"
        for c in range(k)
        if n[c] < max(min_windows, 3) or not moments.s_cc[c] > 0
    ]
    if few:
        return refused(f"too few windows with current (needs {min_windows}): {', '.join(few)}")
    dead = tuple(c for c in range(k) if not (significance[c] > DEAD_SIGMA).any())
    live = [c for c in range(k) if c not in dead]
    if dead and len(live) < v:
        names = ", ".join(layout.coils[c] for c in dead)
        return refused(
            f"dead coil{'s' if len(dead) > 1 else ''} {names} (no beam variable moved beyond "
            f"{DEAD_SIGMA:g} sigma): {len(live)} live coils for {v} variables",
            dead,
        )
    if len(live) < v:
        return refused(f"{len(live)} coils for {v} beam variables", dead)
    hl = h[live]
    norms = np.sqrt((hl * hl).sum(axis=0))
    if not (norms > 0).all() or not np.isfinite(hl).all():
        return refused("a beam variable moves with no coil", dead, 0.0)
    det = float(np.linalg.det((hl.T @ hl) / np.outer(norms, norms)))
    if not det >= 10.0 ** (-2 * v):
        return refused(f"H ill-conditioned (column correlation determinant {det:.1e})", dead, det)
    noise = np.sqrt((h_error[live] ** 2).mean(axis=0))
    weakest = math.inf  # without noise, any direction is determined
    if (noise > 0).all():
        weakest = float(np.linalg.svd(hl / noise, compute_uv=False)[-1])
    if weakest < MIN_SIGNIFICANCE:
        return refused(
            f"H ill-conditioned (its weakest direction {weakest:.1f} sigma of its errors, "
            f"needs {MIN_SIGNIFICANCE:g})",
            dead,
            det,
        )
    inverse = np.linalg.inv(hl.T @ hl)  # (v, v)
    pseudo = inverse @ hl.T  # (v, live)
    beta = pseudo @ d[live]  # (v, m)
    residual = d[live] - hl @ beta  # (live, m); zero for a square H
    covariance = np.zeros((m, v, v))
    for row, c in enumerate(live):
        for j in range(m):
            block = np.empty((v + 1, v + 1))
            block[:v, :v], block[:v, v] = cov_xx[c], cov_xd[c, :, j]
            block[v, :v], block[v, v] = cov_xd[c, :, j], var_d[c, j]
            jacobian = np.column_stack(
                [-np.outer(pseudo[:, row], beta[:, j]) + residual[row, j] * inverse, pseudo[:, row]]
            )
            covariance[j] += jacobian @ block @ jacobian.T
    beta_error = np.sqrt(np.maximum(np.diagonal(covariance, axis1=1, axis2=2), 0.0)).T
    return CycleFit(
        cycle, n.copy(), h, h_error, d, d_error, beta, beta_error, covariance, dead, det
    )


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DitherCycle:
    """One cycle for a shift: ``response`` ``H`` by (coil, variable) (variable's unit per
    mA), ``detector_response`` ``D`` by (coil, target) (fraction per mA), ``sensitivities``
    by (channel or :data:`COMBINED`, variable) (fraction per unit of the variable), the
    ``dead_coils``, ``skipped`` (why no sensitivities), the ``minirun`` whose windows it
    came with (-1 unknown) and ``regression_difference``: regression minus dithering
    slopes by (channel or :data:`COMBINED`, variable), filled in by the results."""

    cycle: int
    minirun: int
    windows: dict[str, int]
    response: dict[tuple[str, str], Measurement]
    detector_response: dict[tuple[str, str], Measurement]
    sensitivities: dict[tuple[str, str], Measurement]
    dead_coils: tuple[str, ...]
    skipped: str = ""
    regression_difference: dict[tuple[str, str], Measurement] = field(default_factory=dict)


def latest_complete_cycle(cycles: tuple[DitherCycle, ...]) -> DitherCycle | None:
    """The latest cycle in which every coil was driven long enough to be fitted (a cycle
    still in progress, or cut by the end of the run, is not one); None before the first."""
    for cycle in reversed(cycles):
        if cycle.windows and min(cycle.windows.values()) >= MIN_COIL_WINDOWS:
            return cycle
    return None


@dataclass(frozen=True)
class Dithering:
    """A run's modulation analysis: every cycle's fit, and the sensitivities averaged over
    the usable ones (``beta`` ``(variables, targets)``, ``covariance`` ``(targets,
    variables, variables)``; NaN and ``skipped`` when none is usable)."""

    layout: Layout
    fits: tuple[CycleFit, ...]
    cycles: tuple[DitherCycle, ...]
    beta: np.ndarray
    covariance: np.ndarray
    windows: int  # of the cycles averaged
    skipped: str = ""

    @property
    def used(self) -> int:
        """Cycles averaged."""
        return sum(1 for f in self.fits if not f.skipped)

    @property
    def dead_coils(self) -> tuple[str, ...]:
        """Coils dead in any cycle, in coil order."""
        dead = {c for f in self.fits for c in f.dead}
        return tuple(name for i, name in enumerate(self.layout.coils) if i in dead)

    def sensitivities(self) -> dict[tuple[str, str], Measurement]:
        """The run's sensitivities by (channel or :data:`COMBINED`, variable)."""
        error = np.sqrt(np.maximum(np.diagonal(self.covariance, axis1=1, axis2=2), 0.0)).T
        return _named_sensitivities(self.beta, error, self.layout, self.windows)


def dither(
    cycles: dict[int, CycleMoments],
    layout: Layout,
    minirun_of: dict[int, int] | None = None,
    min_windows: int = MIN_COIL_WINDOWS,
) -> Dithering:
    """Fit every cycle and average the usable ones' sensitivities (module docstring);
    ``minirun_of``: the minirun each cycle came with."""
    v, m = len(layout.variables), len(layout.targets)
    fits = tuple(fit_cycle(c, moments, layout, min_windows) for c, moments in cycles.items())
    named = tuple(_named_cycle(f, layout, (minirun_of or {}).get(f.cycle, -1)) for f in fits)
    usable = [f for f in fits if not f.skipped]
    beta, covariance = np.full((v, m), math.nan), np.full((m, v, v), math.nan)
    if not fits:
        return Dithering(layout, fits, named, beta, covariance, 0, "no modulation cycle")
    if not usable:
        why = f"none of {len(fits)} modulation cycles usable (last: {fits[-1].skipped})"
        return Dithering(layout, fits, named, beta, covariance, 0, why)
    rows = np.array([f.windows.sum() for f in usable], dtype=np.float64)
    share = rows / rows.sum()  # fixed by the schedule, not by the fitted values
    beta = np.einsum("c,cvm->vm", share, np.array([f.beta for f in usable]))
    covariance = np.einsum("c,cmvw->mvw", share**2, np.array([f.beta_covariance for f in usable]))
    return Dithering(layout, fits, named, beta, covariance, int(rows.sum()))


def _named_sensitivities(
    beta: np.ndarray, error: np.ndarray, layout: Layout, n: int
) -> dict[tuple[str, str], Measurement]:
    out = {
        (channel, variable): Measurement(float(beta[i, j]), float(error[i, j]), n)
        for j, channel in enumerate(layout.channels)
        for i, variable in enumerate(layout.variables)
    }
    j = _combined_target(layout)
    for i, variable in enumerate(layout.variables):
        value, err = (math.nan, math.nan) if j is None else (beta[i, j], error[i, j])
        out[(COMBINED, variable)] = Measurement(float(value), float(err), n)
    return out


def _combined_target(layout: Layout) -> int | None:
    """The target whose sensitivities are the combined asymmetry's: the scatter sum (A_LR)
    or :data:`CROSS_RATIO` (A_FB); None without groups."""
    if layout.groups == ("scatter",):
        return len(layout.channels)
    if layout.groups == AFB_GROUPS:
        return layout.targets.index(CROSS_RATIO)
    return None


def _named_cycle(f: CycleFit, layout: Layout, minirun: int) -> DitherCycle:
    windows = {coil: int(f.windows[c]) for c, coil in enumerate(layout.coils)}
    response = {
        (coil, variable): Measurement(float(f.h[c, i]), float(f.h_error[c, i]), windows[coil])
        for c, coil in enumerate(layout.coils)
        for i, variable in enumerate(layout.variables)
    }
    detector = {
        (coil, target): Measurement(float(f.d[c, j]), float(f.d_error[c, j]), windows[coil])
        for c, coil in enumerate(layout.coils)
        for j, target in enumerate(layout.targets)
    }
    sensitivities = _named_sensitivities(f.beta, f.beta_error, layout, int(f.windows.sum()))
    dead = tuple(layout.coils[c] for c in f.dead)
    return DitherCycle(
        f.cycle, minirun, windows, response, detector, sensitivities, dead, f.skipped
    )


# -- the corrected asymmetry -----------------------------------------------------------------


@dataclass(frozen=True)
class Dithered:
    """A dithering correction's measured asymmetries (like
    :class:`mupnc.monitor.analysis.beam_results.Regressed`): ``combined``, ``channels`` by
    name, the run's ``sensitivities`` by (channel or :data:`COMBINED`, variable), every
    ``cycles``' own, the ``dead_coils`` and why nothing was corrected (``skipped``)."""

    combined: Measurement
    channels: MeasurementTable[str]
    sensitivities: dict[tuple[str, str], Measurement]
    cycles: tuple[DitherCycle, ...]
    dead_coils: tuple[str, ...]
    skipped: str = ""


def dithered(
    raw: np.ndarray,
    raw_error: np.ndarray,
    n: int,
    differences: np.ndarray,
    dithering: Dithering,
) -> Dithered:
    """``A_dit = A_raw - sum_v beta_v dX_v`` per channel and group (``raw``, ``raw_error``
    ``(channels + groups,)`` measured asymmetries over ``n`` patterns; ``differences``
    ``(variables,)`` the mean beam differences over the same patterns), and combined
    (module docstring)."""
    layout = dithering.layout
    raw, raw_error = np.asarray(raw, np.float64), np.asarray(raw_error, np.float64)
    dx = np.asarray(differences, np.float64)
    k = raw.size  # the cross-ratio target has no raw asymmetry of its own
    correction = np.einsum("v,mvw,w->m", dx, dithering.covariance, dx)
    value = raw - dx @ dithering.beta[:, :k]
    error = np.sqrt(raw_error**2 + correction[:k])
    c = len(layout.channels)
    channels: MeasurementTable[str] = MeasurementTable(
        shared_keys(layout.channels), value[:c], error[:c], n
    )
    if layout.groups == ("scatter",):
        combined = Measurement(float(value[c]), float(error[c]), n)
    elif layout.groups == AFB_GROUPS:
        # the cross ratio of the corrected sums; the raw parts' errors independent (counts
        # in separate detectors), the correction's from the cross-ratio target's
        raw_part = _cross_combined(value[c], raw_error[c], value[c + 1], raw_error[c + 1], n)
        j = layout.targets.index(CROSS_RATIO)
        combined = replace(raw_part, error=math.hypot(raw_part.error, math.sqrt(correction[j])))
    else:
        combined = Measurement(math.nan, math.nan, n)
    return Dithered(
        combined,
        channels,
        dithering.sensitivities(),
        dithering.cycles,
        dithering.dead_coils,
        dithering.skipped,
    )


def dithered_moments(moments: CentralMoments, dithering: Dithering) -> Dithered:
    """:func:`dithered` of the regression sums' patterns: ``A_raw = u_mean / w_mean`` per
    target with the error ``s_u / (sqrt(n) w_mean)`` (the regression's ``raw``), ``dX`` their
    mean beam differences."""
    n = moments.n
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(moments.mean_w != 0, moments.mean_w, np.nan)
        raw = moments.mean_u / scale
        spread = np.sqrt(moments.c_uu / max(n - 1, 1) / max(n, 1))
        raw_error = spread / np.abs(scale) if n > 1 else np.full(raw.shape, math.nan)
    return dithered(raw, raw_error, n, moments.mean_x, dithering)


def _cross_combined(a_f: float, e_f: float, a_b: float, e_b: float, n: int) -> Measurement:
    """The cross ratio of corrected forward and backward asymmetries, independent errors."""
    value = _cross(a_f, a_b)
    step = 1e-6
    d_f = (_cross(a_f + step, a_b) - _cross(a_f - step, a_b)) / (2 * step)
    d_b = (_cross(a_f, a_b + step) - _cross(a_f, a_b - step)) / (2 * step)
    return Measurement(value, float(math.hypot(d_f * e_f, d_b * e_b)), n)


def _cross(a_forward: float, a_backward: float) -> float:
    f, b = np.array([1 + a_forward, 1 - a_forward]), np.array([1 + a_backward, 1 - a_backward])
    return float(cross_ratio_asymmetry(f[:1], f[1:], b[:1], b[1:])[0])
