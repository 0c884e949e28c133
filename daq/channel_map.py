"""Channel maps: which detector channel is what, read from a TOML file.

Nothing in mupnc hard-codes "channel 0 is forward"; the map names every channel, its
role and its acceptance.  Roles:

* ``scatter``: an A_LR counter (muon scattering), with its ``cos_theta`` bin centre;
* ``forward`` / ``backward``: A_FB gamma detectors.  "Forward" is downstream along the
  beam axis, so for helicity +1 it sees gammas at theta < pi/2 from the muon spin;
* ``monitor``: a counter that carries no physics asymmetry (luminosity, background);
* ``pol_forward`` / ``pol_backward``: the muon polarimeter's decay-positron counters,
  forward and backward of the stopping region along the spin of helicity +1 (so for
  helicity +1 the forward one counts ``1 + a P`` and the backward one ``1 - a P``, ``P``
  the polarization and ``a`` their energy-averaged ``analysing_power``, default 1/3;
  :mod:`mupnc.monitor.analysis.polarimetry`).  Counted like detectors, but their
  asymmetry measures the beam's polarization, not physics;
* ``bpm``: a beam position monitor, not a detector: its word per window is the beam's
  position on one ``axis`` (``x`` or ``y``) at ``z`` metres along the beam from the
  target (negative upstream), as a signed integer in ``unit`` (``nm``, ``um`` or ``mm``),
  measured with ``resolution`` (same unit) over a linear ``range`` (+- that, same unit;
  default 10 mm).  A monitor at a place of horizontal ``dispersion`` D (metres) reads
  ``x + 1000 D dp/p`` mm, from which the momentum offset follows
  (:mod:`mupnc.daq.beamline`);
* ``coil``: a beam-modulation coil's current readback, not a detector: its word per window
  is the coil's current as a signed integer in ``unit`` (``uA`` or ``mA``; default ``uA``).
  The coils move the beam by known amounts in the windows flagged
  :data:`mupnc.daq.blocks.FLAG_MODULATION`.

The roles of :data:`NOT_DETECTORS` have no acceptance, no scaler and no asymmetry.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import NoReturn

from mupnc.daq.config_file import parse_toml, read_text

ROLES = ("scatter", "forward", "backward", "monitor", "pol_forward", "pol_backward", "bpm", "coil")
NOT_DETECTORS = ("bpm", "coil")
"""Roles of channels that are not detectors: no acceptance, no scaler, no asymmetry."""
POLARIMETER_ROLES = ("pol_forward", "pol_backward")
SIGNAL_ROLES = ("scatter", "forward", "backward")
"""Roles that count the physics signal: their acceptances add up to the detector's
efficiency, signal events per incident muon (:meth:`ChannelMap.signal_efficiency`)."""
"""Roles of the polarimeter's counters: detectors whose asymmetry is the polarization's."""
DEFAULT_ANALYSING_POWER = 1 / 3
"""Decay positrons' analysing power averaged over their energy spectrum (V-A)."""
BPM_UNITS = {"nm": 1e-6, "um": 1e-3, "mm": 1.0}
"""Units a beam position monitor reports in, as millimetres per count."""
COIL_UNITS = {"uA": 1e-3, "mA": 1.0}
"""Units a modulation coil's current readback reports in, as milliamperes per count."""
DEFAULT_COIL_UNIT = "uA"
DEFAULT_BPM_RANGE_MM = 10.0
MODES = ("alr", "afb")


class ChannelMapError(ValueError):
    """A channel map that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    role: str
    acceptance: float
    cos_theta: float | None = None
    axis: str | None = None  # bpm: "x" or "y"
    z: float | None = None  # bpm: metres along the beam from the target
    dispersion: float = 0.0  # bpm: metres
    unit: str | None = None  # bpm, coil: unit of one count
    resolution: float | None = None  # bpm: in its unit
    range: float | None = None  # bpm: half-width of the linear range, in its unit
    analysing_power: float | None = None  # pol_forward, pol_backward: in (0, 1]

    @property
    def mm_per_count(self) -> float:
        """Millimetres per count of a beam position monitor."""
        return BPM_UNITS[self.unit or "nm"]

    @property
    def ma_per_count(self) -> float:
        """Milliamperes per count of a modulation coil's current readback."""
        return COIL_UNITS[self.unit or DEFAULT_COIL_UNIT]


@dataclass(frozen=True, slots=True)
class ChannelMap:
    mode: str
    channels: tuple[Channel, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.channels]

    def indices(self, role: str) -> list[int]:
        """Column indices of the channels with ``role``."""
        return [i for i, c in enumerate(self.channels) if c.role == role]

    @property
    def coils(self) -> list[int]:
        """Column indices of the modulation coils (role ``coil``)."""
        return self.indices("coil")

    @property
    def detector_columns(self) -> list[int]:
        """Column indices of the detector channels (every role but :data:`NOT_DETECTORS`)."""
        return [i for i, c in enumerate(self.channels) if c.role not in NOT_DETECTORS]

    @property
    def signal_efficiency(self) -> float:
        """Signal events counted per incident muon: the sum of the acceptances of the
        :data:`SIGNAL_ROLES` channels (what :mod:`mupnc.planner` calls ``efficiency``)."""
        return sum(c.acceptance for c in self.channels if c.role in SIGNAL_ROLES)

    def detectors(self) -> ChannelMap:
        """The map of the detector channels alone (what asymmetries are formed from)."""
        if all(c.role not in NOT_DETECTORS for c in self.channels):
            return self
        return ChannelMap(self.mode, tuple(c for c in self.channels if c.role not in NOT_DETECTORS))

    def to_json(self) -> str:
        channels = [
            {
                k: v
                for k, v in asdict(c).items()
                if v is not None and (k not in _BPM_KEYS or k in _ROLE_KEYS.get(c.role, ()))
            }
            for c in self.channels
        ]
        return json.dumps({"mode": self.mode, "channels": channels})

    @classmethod
    def from_json(cls, text: str) -> ChannelMap:
        return _validated(json.loads(text), _Source("<json channel map>"))


_TOP_KEYS = ("mode", "channels")
_CHANNEL_KEYS = ("name", "role", "acceptance", "cos_theta", "analysing_power")
_REQUIRED = ("name", "role", "acceptance")
_BPM_KEYS = ("axis", "z", "dispersion", "unit", "resolution", "range")
_COIL_KEYS = ("unit",)
_ROLE_KEYS = {"bpm": _BPM_KEYS, "coil": _COIL_KEYS}
"""Keys of the roles that are not detectors (all of them in :data:`_BPM_KEYS`)."""


def load_channel_map(path: str | Path, mode: str | None = None) -> ChannelMap:
    """Read a channel map file (for measurement ``mode``, if given).

    Every error is a :class:`ChannelMapError` of one line naming the file and, where the
    problem sits in the file, its line: ``maps/x.toml, line 7: channel 'a': ...``.
    """
    text = read_text(path, "channel map", ChannelMapError)
    data = parse_toml(text, str(path), ChannelMapError)
    source = _Source(str(path), text)
    channel_map = _validated(data, source)
    if mode is not None and channel_map.mode != mode:
        source.fail(f"channel map is for mode {channel_map.mode!r}, not {mode!r}")
    return channel_map


def default_channel_map(mode: str) -> ChannelMap:
    """The channel map shipped for a measurement mode (``alr`` or ``afb``)."""
    if mode not in MODES:
        raise ChannelMapError(f"unknown measurement mode {mode!r} (known: {', '.join(MODES)})")
    text = resources.files("mupnc.daq").joinpath(f"channel_maps/{mode}.toml").read_text()
    return _validated(tomllib.loads(text), _Source(f"daq/channel_maps/{mode}.toml", text))


@dataclass(frozen=True)
class _Source:
    """Where a channel map came from: a name for errors and, for a file, its text, so an
    error can name the line (``[[channels]]`` tables or an inline ``channels = [...]``)."""

    name: str
    text: str | None = None

    def line(self, key: str = "mode", channel: int | None = None) -> int:
        """Line (1-based) of top-level ``key``, or of ``key`` in channel number ``channel``
        (0-based; its header line if the key is absent); 1 if not found."""
        lines = (self.text or "").splitlines()
        headers = [i for i, t in enumerate(lines) if re.match(r"^\s*\[\[\s*channels\s*\]\]", t)]
        tables = [i for i, t in enumerate(lines) if re.match(r"^\s*\[", t)]
        if channel is None or channel >= len(headers):
            first, last = 0, tables[0] if tables else len(lines)
            key = key if channel is None else "channels"
        else:
            first = headers[channel]
            last = next((i for i in tables if i > first), len(lines))
        assignment = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        found = next((i for i in range(first, last) if assignment.match(lines[i])), None)
        if found is None:
            found = first if channel is not None and channel < len(headers) else None
        return 1 if found is None else found + 1

    def fail(self, message: str, key: str = "mode", channel: int | None = None) -> NoReturn:
        if self.text is None:
            raise ChannelMapError(f"{self.name}: {message}")
        raise ChannelMapError(f"{self.name}, line {self.line(key, channel)}: {message}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _validated(data: dict, source: _Source) -> ChannelMap:
    if not data:
        source.fail('empty channel map: needs mode = "alr" or "afb" and [[channels]] tables')
    for key in data:
        if key not in _TOP_KEYS:
            source.fail(f"unknown key {key!r} (expected {', '.join(_TOP_KEYS)})", key)
    if "mode" not in data:
        source.fail('\'mode\' is missing (mode = "alr" or "afb")')
    mode = data["mode"]
    if mode not in MODES:
        source.fail(f"'mode' must be one of {MODES}, got {mode!r}")
    raw = data.get("channels")
    if not isinstance(raw, list) or not raw:
        source.fail("needs at least one [[channels]] table", "channels")
    channels: list[Channel] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            source.fail(f"channel #{i + 1} must be a table, got {entry!r}", "channels")
        name = entry.get("name")
        label = f"channel {name!r}" if isinstance(name, str) and name else f"channel #{i + 1}"

        def fail(message: str, key: str, i: int = i, label: str = label) -> NoReturn:
            source.fail(f"{label}: {message}", key, i)

        for key in entry:
            if key not in _CHANNEL_KEYS + _BPM_KEYS:
                known = ", ".join(_CHANNEL_KEYS + _BPM_KEYS)
                fail(f"unknown key {key!r} (expected {known})", key)
        required = ("name", "role") if entry.get("role") in NOT_DETECTORS else _REQUIRED
        for key in required:
            if key not in entry:
                fail(f"'{key}' is missing", key)
        if not isinstance(name, str) or not name:
            fail("'name' must be a non-empty string", "name")
        if name in {c.name for c in channels}:
            fail("the name is already taken by another channel (names must be unique)", "name")
        role = entry["role"]
        if role not in ROLES:
            fail(f"'role' must be one of {ROLES}, got {role!r}", "role")
        if role == "bpm":
            channels.append(_bpm(name, entry, fail))
            continue
        if role == "coil":
            channels.append(_coil(name, entry, fail))
            continue
        for key in _BPM_KEYS:
            if key in entry:
                fail(f"{key!r} is a key of {_keyed_by(key)} only", key)
        acceptance = entry["acceptance"]
        if not _number(acceptance) or not 0 <= acceptance <= 1:
            fail(f"'acceptance' must be a number in [0, 1], got {acceptance!r}", "acceptance")
        cos_theta = entry.get("cos_theta")
        if cos_theta is not None and (not _number(cos_theta) or not -1 <= cos_theta <= 1):
            fail(f"'cos_theta' must be a number in [-1, 1], got {cos_theta!r}", "cos_theta")
        power = entry.get("analysing_power")
        if role in POLARIMETER_ROLES:
            power = DEFAULT_ANALYSING_POWER if power is None else power
            if not _number(power) or not 0 < power <= 1:
                fail(
                    f"'analysing_power' must be a number in (0, 1], got {power!r}",
                    "analysing_power",
                )
            power = float(power)
        elif power is not None:
            fail("'analysing_power' is a key of polarimeter counters only", "analysing_power")
        channels.append(Channel(name, role, float(acceptance), cos_theta, analysing_power=power))
    needed = ("scatter",) if mode == "alr" else ("forward", "backward")
    roles = {c.role for c in channels}
    for role in needed:
        if role not in roles:
            source.fail(f"mode {mode!r} needs a channel with role {role!r}")
    if roles & set(POLARIMETER_ROLES) and not roles >= set(POLARIMETER_ROLES):
        source.fail(
            "a polarimeter needs both directions: channels of role 'pol_forward' and 'pol_backward'"
        )
    if len({c.analysing_power for c in channels if c.role in POLARIMETER_ROLES}) > 1:
        source.fail("the polarimeter's counters must share one 'analysing_power'")
    return ChannelMap(mode=mode, channels=tuple(channels))


def _keyed_by(key: str) -> str:
    """The roles a key of :data:`_BPM_KEYS` belongs to, in words."""
    if key in _COIL_KEYS:
        return "beam position monitors and modulation coils (roles 'bpm', 'coil')"
    return "beam position monitors (role 'bpm')"


def _coil(name: str, entry: dict, fail: Callable[[str, str], NoReturn]) -> Channel:
    """A modulation coil's current readback (keys in the module docstring)."""
    for key in _BPM_KEYS:
        if key in entry and key not in _COIL_KEYS:
            fail(f"{key!r} is a key of beam position monitors (role 'bpm'), not of coils", key)
    unit = entry.get("unit", DEFAULT_COIL_UNIT)
    if not isinstance(unit, str) or unit not in COIL_UNITS:
        fail(f"'unit' must be one of {tuple(COIL_UNITS)}, got {unit!r}", "unit")
    if entry.get("acceptance", 0) != 0:
        fail("'acceptance' is for detectors; a modulation coil has none", "acceptance")
    if "cos_theta" in entry:
        fail("'cos_theta' is for detectors; a modulation coil has none", "cos_theta")
    return Channel(name, "coil", 0.0, unit=unit)


def _bpm(name: str, entry: dict, fail: Callable[[str, str], NoReturn]) -> Channel:
    """A beam position monitor's channel (keys in the module docstring)."""
    for key in ("axis", "z", "resolution"):
        if entry.get(key) is None:
            fail(f"'{key}' is missing (a beam position monitor needs axis, z and resolution)", key)
    if entry["axis"] not in ("x", "y"):
        fail(f"'axis' must be 'x' or 'y', got {entry['axis']!r}", "axis")
    unit = entry.get("unit", "nm")
    if not isinstance(unit, str) or unit not in BPM_UNITS:
        fail(f"'unit' must be one of {tuple(BPM_UNITS)}, got {unit!r}", "unit")
    for key in ("z", "dispersion"):
        if key in entry and not _number(entry[key]):
            fail(f"{key!r} must be a number (metres), got {entry[key]!r}", key)
    for key in ("resolution", "range"):
        if key in entry and (not _number(entry[key]) or entry[key] <= 0):
            fail(f"{key!r} must be a positive number (in {unit}), got {entry[key]!r}", key)
    if entry.get("acceptance", 0) != 0:
        fail("'acceptance' is for detectors; a beam position monitor has none", "acceptance")
    if entry.get("dispersion", 0.0) and entry["axis"] != "x":
        fail("'dispersion' is horizontal: only an axis 'x' monitor has one", "dispersion")
    return Channel(
        name,
        "bpm",
        0.0,
        axis=entry["axis"],
        z=float(entry["z"]),
        dispersion=float(entry.get("dispersion", 0.0)),
        unit=unit,
        resolution=float(entry["resolution"]),
        range=float(entry.get("range", DEFAULT_BPM_RANGE_MM / BPM_UNITS[unit])),
    )
