"""Alarm rules: the TOML file (shipped defaults: ``monitor/alarms/rules.toml``) and what each
rule makes of the monitor's observations (pure).

A rule file has three kinds of tables::

    [inputs]                      # windows of the monitor's recent estimates, seconds
    [classes.NAME]                # actions = ["log", "command", "stop_run"], command = [...]
    [alarms.NAME]                 # one alarm (NAME: lower case, digits, _; PV MON:ALARM:NAME)

An alarm has a ``kind``:

* ``counter``: ``input`` is a cumulative counter (e.g. ``helicity_errors.phase_error``);
  each evaluation its increase counts as violations among the increase of ``per`` (e.g.
  ``windows``; default: one check per evaluation);
* ``limit``: ``input`` is a number; EPICS-like limits ``lolo low high hihi`` with
  severities (defaults MAJOR, MINOR, MINOR, MAJOR); ``absolute`` compares ``|value|``;
  ``sigma`` asks the value to pass a limit by that many of its own errors;
* ``state``: ``pv`` (or ``input``) in ``states`` is a violation;
* ``pv_severity``: the EPICS severity of ``pv`` (its record's own limits);
* ``connection``: any of ``pvs`` disconnected (default: every PV the other rules watch).

Common keys: ``class`` (default ``shift``), ``severity`` (counter, state, connection),
``count``/``ring``/``delay``/``latch`` (:class:`mupnc.monitor.alarms.logic.Debounce`), ``gate``
(``{input = "...", min = x, max = y}``: evaluated only inside), ``guidance`` (what the
shift does), ``latency`` (s: the longest time from the fault to the alarm that the
defaults promise; checked by the fault campaign test), ``enabled``.
Observations that are NaN (no data yet) never violate.

Errors raise :class:`AlarmRulesError` naming the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from mupnc.daq.config_file import parse_toml, read_text
from mupnc.daq.severity import Severity
from mupnc.monitor.alarms.logic import Debounce

DEFAULT_RULES = "rules.toml"
KINDS = ("counter", "limit", "state", "pv_severity", "connection")
ACTIONS = ("log", "command", "stop_run")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
INPUT_DEFAULTS = {
    "charge_window": 10.0,
    "gate_window": 5.0,
    "gate_reference": 15.0,
    "yield_window": 10.0,
    "pull_miniruns": 10.0,
}
"""``[inputs]``: seconds of data behind the recent charge asymmetry, window gate and
detector yields; seconds of beam-on data defining the reference gate; miniruns needed
before the pull width is judged."""
_LIMITS = (("lolo", Severity.MAJOR), ("low", Severity.MINOR))
_UPPER = (("hihi", Severity.MAJOR), ("high", Severity.MINOR))


class AlarmRulesError(ValueError):
    """A rule file that cannot be used (the message names file and line)."""


@dataclass(frozen=True)
class Observation:
    """A monitored quantity now: a number or a state string, its error, the EPICS
    severity of its PV, whether that PV is connected."""

    value: float | str | None
    error: float = math.nan
    severity: Severity = Severity.NO_ALARM
    connected: bool = True


@dataclass(frozen=True)
class Reading:
    """What a rule makes of the observations: input to
    :func:`mupnc.monitor.alarms.logic.evaluate`."""

    severity: Severity
    violations: int | None = None
    checks: int = 1
    enabled: bool = True
    detail: str = ""


@dataclass(frozen=True)
class AlarmClass:
    name: str
    actions: tuple[str, ...] = ("log",)
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gate:
    input: str
    min: float = -math.inf
    max: float = math.inf

    def open(self, observations: dict[str, Observation]) -> bool:
        obs = observations.get(self.input)
        value = _number(obs)
        return value is not None and self.min <= value <= self.max


@dataclass(frozen=True)
class AlarmRule:
    name: str
    kind: str
    alarm_class: AlarmClass
    input: str = ""
    pv: str = ""
    pvs: tuple[str, ...] = ()
    per: str = ""
    severity: Severity = Severity.MAJOR
    limits: tuple[tuple[str, float, Severity], ...] = ()
    absolute: bool = False
    sigma: float = 0.0
    states: tuple[str, ...] = ()
    debounce: Debounce = field(default_factory=Debounce)
    gate: Gate | None = None
    guidance: str = ""
    latency: float = math.inf

    @property
    def pv_name(self) -> str:
        """Suffix of this alarm's PV after the prefix."""
        return f"MON:ALARM:{self.name.upper()}"

    def read(self, observations: dict[str, Observation], increase: dict[str, int]) -> Reading:
        """The rule's reading; ``increase`` holds each counter's increase since last time."""
        reading = getattr(self, f"_read_{self.kind}")(observations, increase)
        if self.gate is not None and not self.gate.open(observations):
            return Reading(Severity.NO_ALARM, 0, 0, False, f"gate {self.gate.input} closed")
        return reading

    def _read_counter(self, observations, increase) -> Reading:
        violations = increase.get(self.input, 0)
        checks = increase.get(self.per, 0) if self.per else 1
        detail = f"{self.input} +{violations}" + (f" in {checks} {self.per}" if self.per else "")
        return Reading(self.severity, violations, checks, True, detail)

    def _read_limit(self, observations, increase) -> Reading:
        obs = observations.get(self.input)
        value = _number(obs)
        if value is None:
            return Reading(Severity.NO_ALARM, detail=f"{self.input} n/a")
        error = obs.error if math.isfinite(obs.error) else 0.0
        x = abs(value) if self.absolute else value
        margin = self.sigma * error
        worst, which = Severity.NO_ALARM, ""
        for name, limit, severity in self.limits:
            beyond = x <= limit - margin if name in ("lolo", "low") else x >= limit + margin
            if beyond and severity > worst:
                worst, which = severity, name
        shown = f"{value:.4g}" + (f" ± {error:.2g}" if error else "")
        detail = f"{self.input} = {shown}" + (f" beyond {which}" if which else "")
        return Reading(worst, detail=detail)

    def _read_state(self, observations, increase) -> Reading:
        key = self.pv or self.input
        obs = observations.get(key)
        value = None if obs is None or not obs.connected else obs.value
        states = {state.casefold() for state in self.states}  # enum states, any case
        bad = value is not None and str(value).casefold() in states
        return Reading(self.severity if bad else Severity.NO_ALARM, detail=f"{key} = {value}")

    def _read_pv_severity(self, observations, increase) -> Reading:
        obs = observations.get(self.pv)
        if obs is None or not obs.connected:
            return Reading(Severity.NO_ALARM, detail=f"{self.pv} not connected")
        value = _number(obs)
        shown = f"{value:.4g}" if value is not None else str(obs.value)
        return Reading(obs.severity, detail=f"{self.pv} = {shown} ({obs.severity.name})")

    def _read_connection(self, observations, increase) -> Reading:
        lost = [k for k in self.pvs if k in observations and not observations[k].connected]
        detail = ("disconnected: " + ", ".join(lost)) if lost else "all connected"
        return Reading(self.severity if lost else Severity.NO_ALARM, detail=detail)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[AlarmRule, ...]
    inputs: dict[str, float] = field(default_factory=lambda: dict(INPUT_DEFAULTS))
    source: str = ""

    @property
    def pvs(self) -> tuple[str, ...]:
        """PV suffixes (after the prefix) the rules watch, in order of first use."""
        names: dict[str, None] = {}
        for rule in self.rules:
            for pv in (rule.pv, *rule.pvs):
                if pv:
                    names[pv] = None
        return tuple(names)

    def __getitem__(self, name: str) -> AlarmRule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def _number(obs: Observation | None) -> float | None:
    if obs is None or not obs.connected or isinstance(obs.value, str) or obs.value is None:
        return None
    value = float(obs.value)
    return value if math.isfinite(value) else None


def _line_of(text: str, table: str, key: str | None = None) -> int:
    """Line (1-based) of ``[table]`` or of ``key`` inside it; 1 if not found."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
    for i, line in enumerate(lines):
        if header.match(line):
            if key is None:
                return i + 1
            for j in range(i + 1, len(lines)):
                if re.match(r"^\s*\[", lines[j]):
                    break
                if re.match(r"^\s*" + re.escape(key) + r"\s*=", lines[j]):
                    return j + 1
            return i + 1
    return 1


class _Parser:
    """Turns the TOML tables into rules; every complaint names the file and line."""

    def __init__(self, path: str, text: str) -> None:
        self.path, self.text = path, text

    def fail(self, table: str, key: str | None, message: str):
        line = _line_of(self.text, table, key)
        raise AlarmRulesError(f"{self.path}, line {line}: [{table}] {message}")

    def take(self, table: str, entries: dict, key: str, kind, default=None):
        if key not in entries:
            return default
        value = entries[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            want = {float: "a number", int: "an integer", str: "a string", bool: "true/false"}
            self.fail(table, key, f"{key} must be {want.get(kind, 'a list of strings')}")
        if kind is float and not math.isfinite(value):
            self.fail(table, key, f"{key} must be finite")
        return value

    def severity(self, table: str, entries: dict, key: str, default: Severity) -> Severity:
        name = self.take(table, entries, key, str)
        if name is None:
            return default
        if name not in Severity.__members__:
            self.fail(table, key, f"{key} {name!r} is not one of {', '.join(Severity.__members__)}")
        return Severity[name]

    def classes(self, tables: dict) -> dict[str, AlarmClass]:
        out = {"shift": AlarmClass("shift")}
        for name, entries in tables.items():
            table = f"classes.{name}"
            self.known(table, entries, {"actions", "command"})
            actions = self.take(table, entries, "actions", tuple, ("log",))
            for action in actions:
                if action not in ACTIONS:
                    self.fail(table, "actions", f"unknown action {action!r} ({', '.join(ACTIONS)})")
            command = self.take(table, entries, "command", tuple, ())
            if ("command" in actions) != bool(command):
                self.fail(table, "command", "the command action needs a command list, and only it")
            out[name] = AlarmClass(name, actions, command)
        return out

    def known(self, table: str, entries, allowed: set[str]) -> None:
        if not isinstance(entries, dict):
            self.fail(table, None, "must be a table")
        for key in entries:
            if key not in allowed:
                self.fail(table, key, f"unknown key {key!r}")

    def rule(self, name: str, entries: dict, classes: dict[str, AlarmClass]) -> AlarmRule | None:
        table = f"alarms.{name}"
        self.known(table, entries, _RULE_KEYS)
        if not NAME.match(name):
            self.fail(table, None, "alarm names are lower case letters, digits and _ (<= 40)")
        kind = self.take(table, entries, "kind", str)
        if kind not in KINDS:
            self.fail(table, "kind", f"kind must be one of {', '.join(KINDS)}")
        class_name = self.take(table, entries, "class", str, "shift")
        if class_name not in classes:
            self.fail(table, "class", f"unknown class {class_name!r}")
        needs = {"counter": ("input",), "limit": ("input",), "pv_severity": ("pv",)}
        for key in needs.get(kind, ()):
            if key not in entries:
                self.fail(table, None, f"a {kind} alarm needs {key}")
        if kind == "state" and (
            "states" not in entries or not ("pv" in entries or "input" in entries)
        ):
            self.fail(table, None, "a state alarm needs states and a pv or input")
        limits = []
        for key, default in (*_LIMITS, *_UPPER):
            limit = self.take(table, entries, key, float)
            if limit is not None:
                limits.append(
                    (key, limit, self.severity(table, entries, f"{key}_severity", default))
                )
        if kind == "limit" and not limits:
            self.fail(table, None, "a limit alarm needs at least one of lolo, low, high, hihi")
        debounce_args = {
            "count": self.take(table, entries, "count", int, 1),
            "ring": self.take(table, entries, "ring", int, 1),
            "delay": self.take(table, entries, "delay", float, 0.0),
            "latch": self.take(table, entries, "latch", bool, True),
        }
        try:
            debounce = Debounce(**debounce_args)
        except ValueError as err:
            self.fail(table, None, str(err))
        gate = None
        if "gate" in entries:
            spec = entries["gate"]
            self.known(table, spec, {"input", "min", "max"})
            gate_input = spec.get("input")
            if not isinstance(gate_input, str):
                self.fail(table, "gate", "gate needs an input name")
            gate = Gate(
                gate_input,
                self.take(table, spec, "min", float, -math.inf),
                self.take(table, spec, "max", float, math.inf),
            )
        if not self.take(table, entries, "enabled", bool, True):
            return None
        default_severity = Severity.INVALID if kind == "connection" else Severity.MAJOR
        return AlarmRule(
            name=name,
            kind=kind,
            alarm_class=classes[class_name],
            input=self.take(table, entries, "input", str, ""),
            pv=self.take(table, entries, "pv", str, ""),
            pvs=self.take(table, entries, "pvs", tuple, ()),
            per=self.take(table, entries, "per", str, ""),
            severity=self.severity(table, entries, "severity", default_severity),
            limits=tuple(limits),
            absolute=self.take(table, entries, "absolute", bool, False),
            sigma=self.take(table, entries, "sigma", float, 0.0),
            states=self.take(table, entries, "states", tuple, ()),
            debounce=debounce,
            gate=gate,
            guidance=self.take(table, entries, "guidance", str, ""),
            latency=self.take(table, entries, "latency", float, math.inf),
        )

    def parse(self) -> RuleSet:
        document = parse_toml(self.text, self.path, AlarmRulesError)
        for key in document:
            if key not in ("inputs", "classes", "alarms"):
                self.fail(key, None, "unknown table (expected inputs, classes, alarms)")
        inputs = dict(INPUT_DEFAULTS)
        given = document.get("inputs", {})
        self.known("inputs", given, set(INPUT_DEFAULTS))
        for key in given:
            value = self.take("inputs", given, key, float)
            if value <= 0:
                self.fail("inputs", key, f"{key} must be positive")
            inputs[key] = value
        classes = self.classes(document.get("classes", {}))
        alarms = document.get("alarms", {})
        if not isinstance(alarms, dict) or not alarms:
            raise AlarmRulesError(f"{self.path}, line 1: no [alarms.NAME] table")
        parsed = [self.rule(name, entries, classes) for name, entries in alarms.items()]
        rules = [r for r in parsed if r is not None]  # disabled alarms are None
        watched = RuleSet(tuple(rules)).pvs
        rules = [
            replace(r, pvs=watched) if r.kind == "connection" and not r.pvs else r for r in rules
        ]
        return RuleSet(tuple(rules), inputs, self.path)


_RULE_KEYS = {
    "kind", "class", "input", "pv", "pvs", "per", "severity", "absolute", "sigma", "states",
    "count", "ring", "delay", "latch", "gate", "guidance", "latency", "enabled",
    *(k for k, _ in (*_LIMITS, *_UPPER)), *(f"{k}_severity" for k, _ in (*_LIMITS, *_UPPER)),
}  # fmt: skip


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    """Rules from TOML text; ``path`` names it in errors."""
    return _Parser(path, text).parse()


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Rules from a file, or the shipped defaults when ``path`` is None."""
    if path is None:
        text = resources.files("mupnc.monitor.alarms").joinpath(DEFAULT_RULES).read_text()
        return parse_rules(text, f"<shipped {DEFAULT_RULES}>")
    return parse_rules(read_text(path, "alarm rules", AlarmRulesError), str(path))
