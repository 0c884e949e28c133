"""The beam at the target, from the beam position monitors of a channel map (pure).

Beam variables (:data:`BEAM_VARIABLES`): position ``x``, ``y`` (mm), angle ``xp``, ``yp``
(mrad) and relative momentum offset ``dpp`` (fraction).  Along a drift the beam is a
straight line, so a monitor on axis ``a`` at ``z`` metres from the target (negative
upstream), at a place of horizontal dispersion ``D`` metres, reads::

    a(z) = a_target + a'_target * z + 1000 * D * dp/p      (mm; a' in mrad = mm/m)

Target position and angle per axis: the straight line through that axis's monitors
without dispersion, weighted by 1/resolution^2 (JAPAN's ``QwCombinedBPM`` least-squares
fit); ``dpp``: the weighted mean over the dispersive monitors of what the line leaves of
their reading, over ``1000 D`` (JAPAN's ``QwEnergyCalculator``).  A variable is measured
only where the monitors determine it: ``x``/``xp`` (``y``/``yp``) need two monitors at
different ``z`` on that axis, ``dpp`` also a dispersive one.  Everything is linear: a fixed
matrix from monitor readings to variables, applied in a fixed order per window (the same
bits however the windows are cut into blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mupnc.daq.channel_map import ChannelMap

BEAM_VARIABLES = ("x", "y", "xp", "yp", "dpp")
UNITS = {"x": "mm", "y": "mm", "xp": "mrad", "yp": "mrad", "dpp": ""}
"""Unit of each beam variable (dp/p is a plain fraction)."""
DISPLAY = {"x": ("nm", 1e6), "y": ("nm", 1e6), "xp": ("nrad", 1e6), "yp": ("nrad", 1e6),
           "dpp": ("ppb", 1e9)}  # fmt: skip
"""How a shift reads a helicity-correlated difference: unit and factor from :data:`UNITS`."""
SLOPE_DISPLAY = {"x": ("ppm/µm", 1e3), "y": ("ppm/µm", 1e3), "xp": ("ppm/µrad", 1e3),
                 "yp": ("ppm/µrad", 1e3), "dpp": ("ppm/ppm", 1.0)}  # fmt: skip
"""How a shift reads an asymmetry slope: unit and factor from fraction per unit of
:data:`UNITS`."""


@dataclass(frozen=True)
class BeamLine:
    """The beam position monitors of a channel map and what they measure.

    ``columns``: their channel columns; ``variables``: the beam variables they determine
    (in :data:`BEAM_VARIABLES` order); ``matrix`` ``(variables, monitors)``: variables from
    readings in mm."""

    columns: tuple[int, ...]
    names: tuple[str, ...]
    z: np.ndarray  # (k,) metres
    dispersion: np.ndarray  # (k,) metres
    axis: tuple[str, ...]
    mm_per_count: np.ndarray  # (k,)
    range_counts: np.ndarray  # (k,) half-width of the linear range, counts
    resolution_mm: np.ndarray  # (k,)
    variables: tuple[str, ...]
    matrix: np.ndarray

    @classmethod
    def of(cls, channel_map: ChannelMap) -> BeamLine:
        columns = channel_map.indices("bpm")
        bpms = [channel_map.channels[i] for i in columns]
        z = np.array([c.z for c in bpms], dtype=np.float64)
        dispersion = np.array([c.dispersion for c in bpms], dtype=np.float64)
        mm = np.array([c.mm_per_count for c in bpms], dtype=np.float64)
        resolution = np.array([c.resolution for c in bpms], dtype=np.float64) * mm
        axis = tuple(str(c.axis) for c in bpms)
        rows: dict[str, np.ndarray] = {}
        for a in ("x", "y"):
            line = [i for i, c in enumerate(bpms) if c.axis == a and c.dispersion == 0]
            if len({float(z[i]) for i in line}) < 2:
                continue
            weight = 1.0 / resolution[line] ** 2
            design = np.column_stack([np.ones(len(line)), z[line]])  # a_target, a' (mm, mrad)
            fit = np.linalg.solve(design.T @ (weight[:, None] * design), design.T * weight)
            position, angle = np.zeros(len(bpms)), np.zeros(len(bpms))
            position[line], angle[line] = fit
            rows[a], rows[a + "p"] = position, angle
        dispersive = [i for i, c in enumerate(bpms) if c.dispersion != 0]
        if dispersive and "x" in rows:
            weight = 1.0 / (resolution[dispersive] / (1000.0 * dispersion[dispersive])) ** 2
            dpp = np.zeros(len(bpms))
            for i, share in zip(dispersive, weight / weight.sum(), strict=True):
                # (reading_i - x - x' z_i) / (1000 D_i), weighted
                per_mm = share / (1000.0 * dispersion[i])
                dpp[i] += per_mm
                dpp -= per_mm * (rows["x"] + rows["xp"] * z[i])
            rows["dpp"] = dpp
        variables = tuple(v for v in BEAM_VARIABLES if v in rows)
        matrix = np.array([rows[v] for v in variables]).reshape(len(variables), len(bpms))
        return cls(
            columns=tuple(columns),
            names=tuple(c.name for c in bpms),
            z=z,
            dispersion=dispersion,
            axis=axis,
            mm_per_count=mm,
            range_counts=np.array([c.range for c in bpms], dtype=np.float64),
            resolution_mm=resolution,
            variables=variables,
            matrix=matrix,
        )

    def at_target(self, counts: np.ndarray) -> np.ndarray:
        """Beam variables ``(n, len(variables))`` from the monitors' words in the window
        counts ``(n, channels)``; per window, in a fixed order."""
        readings = counts[:, list(self.columns)].astype(np.float64) * self.mm_per_count
        out = np.zeros((counts.shape[0], len(self.variables)))
        for j in range(len(self.columns)):
            out += readings[:, j, None] * self.matrix[:, j]
        return out

    def noise_covariance(self) -> np.ndarray:
        """Per-window covariance of the variables that the monitors' resolution alone gives,
        ``(variables, variables)`` in :data:`UNITS` squared."""
        return (self.matrix * self.resolution_mm**2) @ self.matrix.T

    def out_of_range(self, counts: np.ndarray) -> np.ndarray:
        """Windows in which a monitor read beyond its linear range, ``(n,)`` bool."""
        words = np.abs(counts[:, list(self.columns)].astype(np.float64))
        return np.asarray((words > self.range_counts).any(axis=1), dtype=bool)

    def readings_mm(self, beam: dict[str, np.ndarray]) -> np.ndarray:
        """What the monitors would read (mm, without resolution), ``(n, monitors)``, for
        the beam variables at the target ``beam`` (each ``(n,)``, in :data:`UNITS`)."""
        out = []
        for a, z, dispersion in zip(self.axis, self.z, self.dispersion, strict=True):
            reading = beam[a] + beam[a + "p"] * z + 1000.0 * dispersion * beam["dpp"]
            out.append(reading)
        return np.column_stack(out) if out else np.zeros((beam["x"].size, 0))
