"""Channel maps: which detector channel is what, read from a TOML file.

Nothing in mupnc hard-codes "channel 0 is forward"; the map names every channel, its
role and its acceptance.  Roles:

* ``scatter``: an A_LR counter (muon scattering), with its ``cos_theta`` bin centre;
* ``forward`` / ``backward``: A_FB gamma detectors.  "Forward" is downstream along the
  beam axis, so for helicity +1 it sees gammas at theta < pi/2 from the muon spin;
* ``monitor``: a counter that carries no physics asymmetry (luminosity, background).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

ROLES = ("scatter", "forward", "backward", "monitor")
MODES = ("alr", "afb")


class ChannelMapError(ValueError):
    """A channel map that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    role: str
    acceptance: float
    cos_theta: float | None = None


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

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, "channels": [asdict(c) for c in self.channels]})

    @classmethod
    def from_json(cls, text: str) -> ChannelMap:
        data = json.loads(text)
        return _validated(data, source="<json>")


def load_channel_map(path: str | Path) -> ChannelMap:
    """Read a channel map file; errors name the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ChannelMapError(f"{path}: channel map file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ChannelMapError(f"{path}: not valid TOML: {err}") from None
    return _validated(data, source=str(path))


def default_channel_map(mode: str) -> ChannelMap:
    """The channel map shipped for a measurement mode (``alr`` or ``afb``)."""
    if mode not in MODES:
        raise ChannelMapError(f"unknown measurement mode {mode!r} (known: {', '.join(MODES)})")
    text = resources.files("sim").joinpath(f"channel_maps/{mode}.toml").read_text()
    return _validated(tomllib.loads(text), source=f"sim/channel_maps/{mode}.toml")


def _validated(data: dict, source: str) -> ChannelMap:
    mode = data.get("mode")
    if mode not in MODES:
        raise ChannelMapError(f"{source}: 'mode' must be one of {MODES}, got {mode!r}")
    raw = data.get("channels")
    if not isinstance(raw, list) or not raw:
        raise ChannelMapError(f"{source}: needs at least one [[channels]] entry")
    channels = []
    for i, entry in enumerate(raw):
        where = f"{source}: channel #{i + 1}"
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ChannelMapError(f"{where}: 'name' must be a non-empty string")
        role = entry.get("role")
        if role not in ROLES:
            raise ChannelMapError(f"{where} ({name}): 'role' must be one of {ROLES}, got {role!r}")
        acceptance = entry.get("acceptance")
        if not isinstance(acceptance, int | float) or not 0 <= acceptance <= 1:
            raise ChannelMapError(f"{where} ({name}): 'acceptance' must be a number in [0, 1]")
        cos_theta = entry.get("cos_theta")
        if cos_theta is not None and not -1 <= cos_theta <= 1:
            raise ChannelMapError(f"{where} ({name}): 'cos_theta' must lie in [-1, 1]")
        channels.append(Channel(name, role, float(acceptance), cos_theta))
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ChannelMapError(f"{source}: channel names must be unique")
    needed = ("scatter",) if mode == "alr" else ("forward", "backward")
    for role in needed:
        if role not in {c.role for c in channels}:
            raise ChannelMapError(f"{source}: mode {mode!r} needs a channel with role {role!r}")
    return ChannelMap(mode=mode, channels=tuple(channels))
