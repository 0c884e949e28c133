"""Fault injection: the faults a shift crew must see, switchable while a run is going.

:data:`FAULT_KINDS` (the CLI contract, ``mupnc demo --inject KIND``) in bit order: bit ``i``
of a window's ``fault`` truth mask (:class:`mupnc.sim.source.SimulatedBlock`) is set when
``FAULT_KINDS[i]`` affected that window.  What each kind does (parameters, defaults):

* ``helicity_flip`` (``probability=0.05``): the *reported* helicity of a whole pattern
  (fast scheme; for slow/kick a whole reversal interval) is inverted, with this probability
  per pattern.  The actual helicity is untouched.
* ``stuck_helicity`` (``value=+1``): every reported helicity reads ``value``.
* ``missed_windows`` (``probability=0.01``): each window is lost with this probability; its
  sequence number is skipped and it is never published nor counted by the scalers.  The
  bit marks the first published window after each gap.
* ``phase_error`` (``probability=0.05``): in a chosen pattern/interval the published
  pattern phase is one ahead (``(phase + 1) mod length``) while the pattern-sync bit stays
  on the true first window, so the sync bit appears at a phase other than 0.
* ``rotator_mismatch``: the spin reverser did not follow its setpoint: the readback
  holds the opposite state (fast, slow: ``-setpoint``; kick: the other turn number) and
  the beam spin follows the readback.  Reported helicity and the helicity gate still
  follow the setpoint, so the data are mis-sorted unless the readback is checked.
* ``settle_violation``: the spin reverses while the integration gate is open.  Slow/kick:
  windows inside the ramp/settle gate are published without ``FLAG_SETTLE``.  Fast: the
  gate also integrates T_settle; windows whose helicity changed get the transition
  (half-way spin, see :mod:`mupnc.sim.source`) and are marked.
* ``charge_asymmetry`` (``value=1e-3``): the helicity-correlated intensity asymmetry jumps
  to ``value`` (fraction).
* ``frequency_drift`` (``fraction=0.01``): the reversal clock runs fast by ``fraction``:
  fast scheme: windows shorten (fewer muons per window); slow/kick: reversal intervals
  shorten (from the next interval on).

Random choices use :func:`unit_uniform`, a hash of (seed, kind, pattern or window
number), so they do not depend on how windows are cut into blocks and do not disturb the
physics random stream.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

FAULT_KINDS: tuple[str, ...] = (
    "helicity_flip",
    "stuck_helicity",
    "missed_windows",
    "phase_error",
    "rotator_mismatch",
    "settle_violation",
    "charge_asymmetry",
    "frequency_drift",
)

FAULT_DEFAULTS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {
        kind: MappingProxyType(params)
        for kind, params in {
            "helicity_flip": {"probability": 0.05},
            "stuck_helicity": {"value": 1.0},
            "missed_windows": {"probability": 0.01},
            "phase_error": {"probability": 0.05},
            "rotator_mismatch": {},
            "settle_violation": {},
            "charge_asymmetry": {"value": 1e-3},
            "frequency_drift": {"fraction": 0.01},
        }.items()
    }
)
"""Parameters each kind accepts, with their defaults."""


def fault_bit(kind: str) -> int:
    """The bit of ``kind`` in the per-window fault mask."""
    return 1 << _index(kind)


def _index(kind: str) -> int:
    try:
        return FAULT_KINDS.index(kind)
    except ValueError:
        raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})") from None


def _checked(kind: str, name: str, value: float) -> float:
    value = float(value)
    ok = math.isfinite(value)
    if name == "probability":
        ok = ok and 0 <= value <= 1
        need = "a probability in [0, 1]"
    elif kind == "stuck_helicity":
        ok = value in (-1.0, 1.0)
        need = "+1 or -1"
    elif kind == "charge_asymmetry":
        ok = ok and -0.5 < value < 0.5
        need = "a fraction in (-0.5, 0.5)"
    else:  # frequency_drift
        ok = ok and -0.5 < value < 1.0 and value != 0
        need = "a non-zero fraction in (-0.5, 1)"
    if not ok:
        raise ValueError(f"fault {kind}: {name} must be {need}, got {value!r}")
    return value


class FaultSwitchboard:
    """Which faults are on, with their parameters; switched between blocks."""

    def __init__(self) -> None:
        self._active: dict[str, dict[str, float]] = {}

    def set(self, kind: str, on: bool, **params: float) -> None:
        """Switch ``kind`` on (with ``params`` over the defaults) or off."""
        _index(kind)
        defaults = FAULT_DEFAULTS[kind]
        unknown = set(params) - set(defaults)
        if unknown:
            accepted = ", ".join(defaults) or "none"
            raise ValueError(
                f"fault {kind}: unknown parameter(s) {', '.join(sorted(unknown))}"
                f" (accepted: {accepted})"
            )
        if not on:
            self._active.pop(kind, None)
            return
        merged = dict(defaults)
        merged.update({name: _checked(kind, name, v) for name, v in params.items()})
        self._active[kind] = merged

    @property
    def active(self) -> dict[str, dict[str, float]]:
        """The faults switched on, ``{kind: params}`` in :data:`FAULT_KINDS` order (a copy)."""
        return {k: dict(self._active[k]) for k in FAULT_KINDS if k in self._active}

    def params(self, kind: str) -> dict[str, float] | None:
        """The parameters of ``kind`` if it is on, else ``None``."""
        return self._active.get(kind)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def unit_uniform(keys: np.ndarray, seed: int, kind: str) -> np.ndarray:
    """Uniform numbers in [0, 1), one per integer key, a fixed function of (seed, kind, key).

    splitmix64 finaliser; used for fault choices per pattern or per window.
    """
    salt = np.uint64((seed * 0x100 + _index(kind) + 1) & 0xFFFF_FFFF_FFFF_FFFF)
    with np.errstate(over="ignore"):
        z = np.asarray(keys).astype(np.uint64) * _GOLDEN + salt * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
