"""Run configuration files (``--config RUN.toml``): the settings of a simulated run in one
file, stored with the run (flags given beside it override it).

Tables and keys (units as in :class:`mupnc.sim.source.SourceConfig`; every key optional)::

    mode = "alr"              # alr | afb
    seed = 1
    [reversal]   scheme (fast|slow|kick), rotator_pattern (quartet|pair), flip_period (s),
                 ramp_time (s), settle_time (s), kick_turns ([+ state, - state]),
                 kick_precession (deg/turn; default: from the momentum)
    [helicity]   pattern (pair|quartet|octet|...), window_rate (Hz), delay_patterns
    [beam]       rate (muons/s), polarization, momentum (MeV/c, 10-500), charge_asymmetry,
                 intensity_jitter, bcm_resolution (relative, per window)
    [detector]   preset (flat|sm|np), asymmetry, z (target nuclear charge; default 6 for
                 alr, 36 for afb), mass_number (nucleons; default the element's),
                 signal_fraction, decay_electron_fraction (afb: share of mu-decay
                 electrons, <= 1 - signal_fraction), efficiency_mismatch,
                 channel_map (a channel-map file, relative to this one)
    [beamline.V] for each beam variable V (x, y in mm; xp, yp in mrad; dpp a fraction):
                 jitter (rms per window), hc_difference ((V+ - V-)/2), drift (rms of the
                 slow part), drift_time (s); defaults in :mod:`mupnc.sim.beamline`
    [beamline.sensitivity]  CHANNEL = { V = fractional yield change per unit, ... }, and
                 ``default`` for every detector channel without an entry
    [actuators.A] the source's helicity-correlated actuators, A = charge (setpoint ppm),
                 x, y (setpoints um): slope (effect per setpoint unit), limit, noise,
                 drift, drift_time (s); :mod:`mupnc.sim.actuators`
    [modulation] beam modulation by coils: enabled (boolean, default false), period (s
                 between cycle starts, 60), coil_time (s each coil is driven, 2; the coils
                 one after the other, n x coil_time < period), shape (sine|step), frequency
                 (Hz, sine, 5), amplitude (mA, 100), stuck (coils whose current shows but
                 whose beam does not move); :mod:`mupnc.sim.modulation`
    [modulation.response]  COIL = { V = change per mA, ... } (V as in [beamline]; mm,
                 mrad, fraction): the coils of a cycle in order, each a coil channel of
                 the channel map; replaces the default coil_1 ... coil_5 as a whole
    [polarimeter] the muon polarimeter and the spin it measures: enabled (boolean, default
                 false: no counters), analysing_power (1/3), polarization_minus (the -
                 state's signed polarization; default -polarization), acceptance (positrons
                 counted per muon per counter, 1e-3), balance (the backward counter's true
                 efficiency relative to the map's, 1), background (counts/s per counter),
                 dead_time (s), depolarization (fraction per hour), fault_at (s) with
                 fault_polarization_minus (the - state's polarization from then on);
                 :mod:`mupnc.sim.polarimeter`
    [feedback.L] the monitor's feedback loops, L = charge or position (x and y):
                 enabled, dry_run (booleans), gain, patterns (good patterns per
                 decision), max_error and dead_band (ppm; um), clamp (setpoint unit),
                 slope (input per setpoint unit), converge_actions;
                 :mod:`mupnc.monitor.feedback.loop` (:func:`load_feedback`)

An unknown table or key, a value of the wrong type or an unphysical value is refused in
one line naming the file, the line and the key: ``run.toml, line 4: [beam] polarization:
polarization must lie in [0, 1], got 1.2``.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from mupnc.daq.beamline import BEAM_VARIABLES, BeamLine
from mupnc.daq.channel_map import (
    NOT_DETECTORS,
    ChannelMap,
    default_channel_map,
    load_channel_map,
)
from mupnc.daq.config_file import parse_toml, read_text
from mupnc.monitor.feedback.loop import DEFAULTS, LOOP_ACTUATORS, LOOPS, LoopSettings
from mupnc.sim.actuators import ACTUATOR_KEYS, ACTUATORS, ActuatorsConfig
from mupnc.sim.beamline import SENSITIVITY_DEFAULT, BeamlineConfig
from mupnc.sim.modulation import MODULATION_KEYS, ModulationConfig
from mupnc.sim.polarimeter import POLARIMETER_KEYS, PolarimeterConfig
from mupnc.sim.source import SourceConfig, SourceConfigError


class RunFileError(ValueError):
    """A run configuration file that cannot be used; one line naming file, line and key."""


_FLOAT, _INT, _STR, _TURNS, _PATH = "a number", "an integer", "a string", "two integers", "a path"
KEYS: dict[str | None, dict[str, tuple[str, str]]] = {
    None: {"mode": ("mode", _STR), "seed": ("seed", _INT)},
    "reversal": {
        "scheme": ("scheme", _STR),
        "flip_period": ("flip_period", _FLOAT),
        "ramp_time": ("ramp_time", _FLOAT),
        "settle_time": ("settle_time", _FLOAT),
        "kick_turns": ("kick_turns", _TURNS),
        "kick_precession": ("kick_precession", _FLOAT),
        "rotator_pattern": ("rotator_pattern", _STR),
    },
    "helicity": {
        "pattern": ("pattern", _STR),
        "window_rate": ("window_rate", _FLOAT),
        "delay_patterns": ("delay_patterns", _INT),
    },
    "beam": {
        "rate": ("muon_rate", _FLOAT),
        "polarization": ("polarization", _FLOAT),
        "momentum": ("momentum", _FLOAT),
        "charge_asymmetry": ("charge_asymmetry", _FLOAT),
        "intensity_jitter": ("intensity_jitter", _FLOAT),
        "bcm_resolution": ("bcm_resolution", _FLOAT),
    },
    "detector": {
        "preset": ("preset", _STR),
        "asymmetry": ("asymmetry", _FLOAT),
        "z": ("z", _INT),
        "mass_number": ("mass_number", _FLOAT),
        "signal_fraction": ("signal_fraction", _FLOAT),
        "decay_electron_fraction": ("decay_electron_fraction", _FLOAT),
        "efficiency_mismatch": ("efficiency_mismatch", _FLOAT),
        "channel_map": ("channel_map", _PATH),
    },
}
"""(table or None for the top level) -> key -> (:class:`SourceConfig` field, kind)."""
SECTIONS = ("beamline", "actuators", "feedback", "modulation", "polarimeter")
"""Tables of named tables, read by functions of their own."""
FEEDBACK_KEYS: dict[str, str] = {
    "enabled": "a boolean",
    "dry_run": "a boolean",
    "gain": _FLOAT,
    "patterns": _INT,
    "max_error": _FLOAT,
    "dead_band": _FLOAT,
    "clamp": _FLOAT,
    "slope": _FLOAT,
    "converge_actions": _INT,
}
BEAMLINE_KEYS = ("jitter", "hc_difference", "drift", "drift_time")


def load_run_file(path: str | Path) -> dict[str, Any]:
    """The :class:`SourceConfig` fields set by the file at ``path`` (checked on their own:
    the file must describe a run that can be simulated)."""
    text = read_text(path, "run configuration", RunFileError)
    data = parse_toml(text, str(path), RunFileError)
    fields: dict[str, Any] = {}
    where: dict[str, tuple[str | None, str]] = {}
    for table, key, value in _entries(data, path, text):
        field, kind = KEYS[table][key]
        fields[field] = _typed(value, kind, path, text, table, key)
        where[field] = (table, key)
    if "channel_map" in fields:
        map_path = Path(path).parent / fields["channel_map"]
        fields["channel_map"] = load_channel_map(map_path, fields.get("mode"))
    if "beamline" in data:
        channel_map = fields.get("channel_map") or default_channel_map(fields.get("mode", "alr"))
        fields["beamline"] = _beamline(data["beamline"], channel_map, path, text)
    if "actuators" in data:
        fields["actuators"] = _actuators(data["actuators"], path, text)
    if "modulation" in data:
        channel_map = fields.get("channel_map") or default_channel_map(fields.get("mode", "alr"))
        fields["modulation"] = _modulation(data["modulation"], channel_map, path, text)
    if "polarimeter" in data:
        fields["polarimeter"] = _polarimeter(data["polarimeter"], path, text)
    try:
        SourceConfig(**fields)
    except SourceConfigError as err:
        if "modulation" in fields and str(err).startswith("modulation "):
            _modulation_fail(path, text, str(err).removeprefix("modulation "), data["modulation"])
        field = next((f for f in where if str(err).startswith(f)), None)
        table, key = where.get(field, (None, "")) if field else (None, "")
        _fail(path, text, table, key, str(err))
    return fields


def _entries(data: dict, path: str | Path, text: str):
    for name, value in data.items():
        if name in SECTIONS:
            continue  # _beamline, _actuators, _modulation, _polarimeter, load_feedback
        if isinstance(value, dict):
            if name not in KEYS:
                known = ", ".join([*(f"[{t}]" for t in KEYS if t), *(f"[{t}]" for t in SECTIONS)])
                _fail(path, text, name, "", f"unknown table [{name}] (known: {known})")
            for key, item in value.items():
                if key not in KEYS[name]:
                    _fail(path, text, name, key, f"unknown key (known: {', '.join(KEYS[name])})")
                yield name, key, item
        elif name in KEYS[None]:
            yield None, name, value
        else:
            _fail(path, text, None, name, f"unknown key (known: {', '.join(KEYS[None])})")


def _beamline(data: object, channel_map: ChannelMap, path, text: str) -> BeamlineConfig:
    """The ``[beamline]`` tables, checked against the channel map."""
    if not isinstance(data, dict):
        _fail(path, text, None, "beamline", "must be tables [beamline.x], [beamline.sensitivity]")
    variables: dict[str, dict[str, float]] = {}
    sensitivity: dict[str, dict[str, float]] = {}
    known = ", ".join([*BEAM_VARIABLES, "sensitivity"])
    for name, table in data.items():
        where = f"beamline.{name}"
        if name not in (*BEAM_VARIABLES, "sensitivity"):
            _fail(
                path, text, where, "", f"[{where}]: unknown beam variable {name!r} (known: {known})"
            )
        if not isinstance(table, dict):
            _fail(path, text, "beamline", name, f"must be a table [{where}], got {table!r}")
        if name != "sensitivity":
            for key, value in table.items():
                if key not in BEAMLINE_KEYS:
                    _fail(
                        path, text, where, key, f"unknown key (known: {', '.join(BEAMLINE_KEYS)})"
                    )
                number = _typed(value, _FLOAT, path, text, where, key)
                if key != "hc_difference" and (number < 0 or (key == "drift_time" and number == 0)):
                    _fail(
                        path,
                        text,
                        where,
                        key,
                        f"must be {'> 0' if key == 'drift_time' else '>= 0'}, got {value!r}",
                    )
            variables[name] = {key: float(value) for key, value in table.items()}
            continue
        roles = {c.name: c.role for c in channel_map.channels}
        for channel, entry in table.items():
            if channel != SENSITIVITY_DEFAULT and channel not in roles:
                _fail(path, text, where, channel, f"the channel map has no channel {channel!r}")
            if roles.get(channel) in NOT_DETECTORS:
                what = "a beam position monitor" if roles[channel] == "bpm" else "a modulation coil"
                _fail(path, text, where, channel, f"{channel!r} is {what}, not a detector")
            if not isinstance(entry, dict):
                _fail(
                    path,
                    text,
                    where,
                    channel,
                    f"must be a table {{ x = 1e-3, ... }}, got {entry!r}",
                )
            for variable, value in entry.items():
                if variable not in BEAM_VARIABLES:
                    _fail(
                        path,
                        text,
                        where,
                        channel,
                        f"unknown beam variable {variable!r} (known: {', '.join(BEAM_VARIABLES)})",
                    )
                _typed(value, _FLOAT, path, text, where, channel)
            sensitivity[channel] = {variable: float(value) for variable, value in entry.items()}
    return BeamlineConfig(variables, sensitivity)


def _named_tables(data: object, section: str, names: tuple[str, ...], path, text: str) -> dict:
    """``[section.NAME]`` tables, ``NAME`` one of ``names``."""
    if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
        _fail(path, text, None, section, f"must be tables [{section}.{names[0]}], ...")
    for name in data:
        if name not in names:
            where = f"{section}.{name}"
            _fail(
                path,
                text,
                where,
                "",
                f"[{where}]: unknown name {name!r} (known: {', '.join(names)})",
            )
    return data


def _actuators(data: object, path, text: str) -> ActuatorsConfig:
    """The ``[actuators.A]`` tables (:mod:`mupnc.sim.actuators`)."""
    given: dict[str, dict[str, float]] = {}
    for name, table in _named_tables(data, "actuators", ACTUATORS, path, text).items():
        where = f"actuators.{name}"
        for key, value in table.items():
            if key not in ACTUATOR_KEYS:
                _fail(path, text, where, key, f"unknown key (known: {', '.join(ACTUATOR_KEYS)})")
            given.setdefault(name, {})[key] = _typed(value, _FLOAT, path, text, where, key)
        problem = ActuatorsConfig({name: given.get(name, {})}).problem()
        if problem:  # "charge.slope must be ..."
            name_key, message = problem.split(" ", 1)
            _fail(path, text, where, name_key.split(".", 1)[1], message)
    return ActuatorsConfig(given)


def _modulation(data: object, channel_map: ChannelMap, path, text: str) -> ModulationConfig:
    """The ``[modulation]`` table and its ``[modulation.response]`` (:mod:`mupnc.sim.modulation`),
    checked against the coils of the channel map."""
    if not isinstance(data, dict):
        _fail(path, text, None, "modulation", "must be a table [modulation]")
    fields: dict[str, Any] = {}
    known = ", ".join([*MODULATION_KEYS, "response"])
    for key, value in data.items():
        if key == "response":
            fields["response"] = _modulation_response(value, path, text)
        elif key not in MODULATION_KEYS:
            _fail(path, text, "modulation", key, f"unknown key (known: {known})")
        elif key == "enabled":
            if not isinstance(value, bool):
                _fail(path, text, "modulation", key, f"must be a boolean, got {value!r}")
            fields[key] = value
        elif key == "shape":
            fields[key] = _typed(value, _STR, path, text, "modulation", key)
        elif key == "stuck":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                _fail(path, text, "modulation", key, f"must be a list of coil names, got {value!r}")
            fields[key] = tuple(value)
        else:
            fields[key] = _typed(value, _FLOAT, path, text, "modulation", key)
    config = ModulationConfig(**fields)
    problem = config.problem(channel_map)
    if problem:
        _modulation_fail(path, text, problem, data)
    return config


def _polarimeter(data: object, path, text: str) -> PolarimeterConfig:
    """The ``[polarimeter]`` table (:mod:`mupnc.sim.polarimeter`)."""
    if not isinstance(data, dict):
        _fail(path, text, None, "polarimeter", "must be a table [polarimeter]")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key not in POLARIMETER_KEYS:
            known = ", ".join(POLARIMETER_KEYS)
            _fail(path, text, "polarimeter", key, f"unknown key (known: {known})")
        if key == "enabled":
            if not isinstance(value, bool):
                _fail(path, text, "polarimeter", key, f"must be a boolean, got {value!r}")
            fields[key] = value
        else:
            fields[key] = _typed(value, _FLOAT, path, text, "polarimeter", key)
    config = PolarimeterConfig(**fields)
    problem = config.problem()
    if problem:
        key = problem.split(" ", 1)[0]
        _fail(path, text, "polarimeter", key if key in data else "", problem)
    return config


def _modulation_response(data: object, path, text: str) -> dict[str, dict[str, float]]:
    """``[modulation.response]``: ``COIL = { V = change per mA, ... }``."""
    table = "modulation.response"
    if not isinstance(data, dict) or not data:
        _fail(
            path, text, "modulation", "response", "must be a table [modulation.response] of coils"
        )
    response: dict[str, dict[str, float]] = {}
    for coil, entry in data.items():
        if not isinstance(entry, dict):
            _fail(path, text, table, coil, f"must be a table {{ x = 1e-3, ... }}, got {entry!r}")
        for variable, value in entry.items():
            if variable not in BEAM_VARIABLES:
                _fail(
                    path,
                    text,
                    table,
                    coil,
                    f"unknown beam variable {variable!r} (known: {', '.join(BEAM_VARIABLES)})",
                )
            _typed(value, _FLOAT, path, text, table, coil)
        response[coil] = {variable: float(value) for variable, value in entry.items()}
    return response


def _modulation_fail(path, text: str, problem: str, table: dict):
    """Refuse a :meth:`ModulationConfig.problem` (``KEY ...`` or ``response.COIL: ...``) at
    the line of its key in the ``[modulation]`` ``table`` of the file: the period's for a
    cycle too long for it when only the period is given; the table's header for a key the
    file does not give."""
    response = table.get("response")
    coils = list(response) if isinstance(response, dict) else []
    named = [f"response.{c}" for c in coils if problem.startswith(f"response.{c}")]
    match = re.match(r"\w+", problem)
    key = max(named, key=len) if named else match.group() if match else ""
    message = problem[len(key) + 2 :] if problem[len(key) :].startswith(": ") else problem
    if key.startswith("response."):
        coil = key.split(".", 1)[1]
        if re.search(r"^\s*\[\s*modulation\.response\s*\]", text, re.MULTILINE):
            _fail(path, text, "modulation.response", coil, message)
        _fail(path, text, "modulation", "response", f"{coil}: {message}")
    if key == "coil_time" and key not in table and "period" in table:
        key = "period"
    if key not in table:
        _fail(path, text, "modulation", "", f"[modulation] {problem}")
    _fail(path, text, "modulation", key, message)


def load_feedback(path: str | Path, channel_map: ChannelMap) -> dict[str, LoopSettings]:
    """The ``[feedback.L]`` tables of the run file at ``path``: each loop's settings (the
    loop's :data:`~mupnc.monitor.feedback.loop.DEFAULTS` for keys not given; loops not
    mentioned are absent), checked against the beam monitors of ``channel_map``."""
    text = read_text(path, "run configuration", RunFileError)
    data = parse_toml(text, str(path), RunFileError)
    if "feedback" not in data:
        return {}
    measured = BeamLine.of(channel_map).variables
    out: dict[str, LoopSettings] = {}
    for loop, table in _named_tables(data["feedback"], "feedback", LOOPS, path, text).items():
        where = f"feedback.{loop}"
        fields: dict[str, Any] = {}
        enabled, dry_run = False, False
        for key, value in table.items():
            kind = FEEDBACK_KEYS.get(key)
            if kind is None:
                _fail(path, text, where, key, f"unknown key (known: {', '.join(FEEDBACK_KEYS)})")
            if kind == "a boolean":
                if not isinstance(value, bool):
                    _fail(path, text, where, key, f"must be a boolean, got {value!r}")
                enabled, dry_run = (value, dry_run) if key == "enabled" else (enabled, value)
            else:
                fields[key] = _typed(value, kind, path, text, where, key)
        mode = ("dry_run" if dry_run else "on") if enabled else "off"
        settings = replace(DEFAULTS[loop], mode=mode, **fields)
        problem = settings.problem(loop)
        if problem:
            key, _, message = problem.partition(": ")
            _fail(path, text, where, key, message)
        missing = [v for v in LOOP_ACTUATORS[loop] if loop != "charge" and v not in measured]
        if missing:
            _fail(
                path,
                text,
                where,
                "",
                f"[{where}]: the beam line measures no {', '.join(missing)} (no beam position"
                " monitors for it in the channel map)",
            )
        out[loop] = settings
    return out


def _typed(value: object, kind: str, path, text, table: str | None, key: str) -> Any:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _FLOAT and number and math.isfinite(value):
        return float(value)
    if kind == _INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (_STR, _PATH) and isinstance(value, str) and value:
        return value
    integers = isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )
    if kind == _TURNS and integers and len(value) == 2:
        return tuple(value)
    _fail(path, text, table, key, f"must be {kind}, got {value!r}")


def _fail(path, text: str, table: str | None, key: str, message: str):
    name = f"[{table}] {key}".strip() if table else key
    prefix = f"{name}: " if name and not message.startswith("[") else ""
    raise RunFileError(f"{path}, line {_line(text, table, key)}: {prefix}{message}")


def _line(text: str, table: str | None, key: str) -> int:
    """Line (1-based) of ``key`` in ``table`` (its header if ``key`` is empty); 1 if absent."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    headers = [i for i, t in enumerate(lines) if re.match(r"^\s*\[", t)]
    if table is not None:
        header = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]")
        found = next((i for i in headers if header.match(lines[i])), None)
        if found is None:
            return 1
        if not key:
            return found + 1
        start, end = found + 1, next((i for i in headers if i > found), len(lines))
    elif headers:
        end = headers[0]
    assignment = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    hit = next((i for i in range(start, end) if assignment.match(lines[i])), None)
    return 1 if hit is None else hit + 1
