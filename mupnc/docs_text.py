"""Documentation generated from the code, so the docs cannot drift from it.

Three blocks are written between marker comments:

* ``docs/reference.md``, ``<!-- cli:begin -->`` … ``<!-- cli:end -->``: every subcommand
  of the ``mupnc`` parser (:func:`mupnc.cli.build_parser`) with its options and its
  one-line help (:func:`cli_table`);
* ``docs/reference.md``, ``<!-- pvs:begin -->`` … ``<!-- pvs:end -->``: ``mupnc pvs
  --prefix '' --markdown``;
* ``docs/shift.md``, ``<!-- alarms:begin -->`` … ``<!-- alarms:end -->``: every shipped
  alarm rule, when it trips and what to do (the rule's ``guidance``), from
  ``monitor/alarms/rules.toml`` (:func:`alarm_guide`).

``python -m mupnc.docs_text`` rewrites the three blocks in place; ``--check`` only says
which are stale (exit status 1). ``tests/test_docs_text.py`` checks they are current.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from pathlib import Path

from mupnc.monitor.alarms.rules import AlarmRule, RuleSet

COMMON_OPTIONS = ("[-h]", "[--db DB]", "[-v]")
"""Options every subcommand takes; said once above the table, not in every row."""
WINDOW_RATE = 240.0
"""Hz: the default helicity window rate, to put window counts into seconds."""
GATES = {
    "beam.on_for": "once the beam has been on for {min:g} s",
    "stats.miniruns": "from {min:g} complete miniruns on",
}
"""How a rule's gate reads in the guide (others: the input's name and its range)."""
ROOT = Path(__file__).resolve().parents[1]


def _usage(parser: argparse.ArgumentParser) -> str:
    """The parser's usage on one line, without ``usage: PROG`` and the common options."""
    formatter = argparse.HelpFormatter(parser.prog, width=100_000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, "")
    text = " ".join(formatter.format_help().split())
    for option in COMMON_OPTIONS:
        text = text.replace(f" {option}", "")
    return text.removeprefix(parser.prog).strip()


def _commands(
    parser: argparse.ArgumentParser,
) -> list[tuple[argparse.ArgumentParser, str]]:
    """Every leaf subcommand's parser with its one-line help, in the parser's order
    (``run new`` and ``run close`` rather than ``run``)."""
    out: list[tuple[argparse.ArgumentParser, str]] = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            nested = _commands(sub)
            out += nested or [(sub, helps.get(name, ""))]
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def simulation_options() -> str:
    """The simulation settings ``demo``, ``ioc``, ``pvs`` and ``sim`` share, as usage."""
    from mupnc.cli import _simulation_options

    parser = argparse.ArgumentParser(prog="", add_help=False)
    _simulation_options(parser)
    return _usage(parser)


def cli_table(parser: argparse.ArgumentParser) -> str:
    """Markdown: each subcommand, its options (from argparse) and its one-line help; the
    shared simulation settings once, below the table, as ``[simulation options]``."""
    shared = simulation_options()
    lines = ["| command | options | what it does |", "|---|---|---|"]
    for sub, help_text in _commands(parser):
        options = _usage(sub).replace(shared, "[simulation options]")
        shown = f"`{_cell(options)}`" if options else ""
        lines.append(f"| `{sub.prog}` | {shown} | {_cell(help_text)} |")
    lines += ["", f"`[simulation options]`: `{shared}`."]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return f"{value:g}"


def _windows(count: int) -> str:
    seconds = count / WINDOW_RATE
    return f"{count} windows ({_number(seconds)} s at {_number(WINDOW_RATE)} Hz)"


def _condition(rule: AlarmRule) -> str:
    """When ``rule`` trips, in words (its kind, input, limits and debounce)."""
    debounce = rule.debounce
    if rule.kind == "counter":
        among = _windows(debounce.ring) if rule.per == "windows" else f"{debounce.ring} s"
        text = f"`{rule.input}` grows by {debounce.count} or more within {among}"
    elif rule.kind == "limit":
        value = f"|`{rule.input}`|" if rule.absolute else f"`{rule.input}`"
        parts = []
        for name, limit, severity in sorted(rule.limits, key=lambda item: item[1]):
            side = "≤" if name in ("lolo", "low") else "≥"
            parts.append(f"{value} {side} {_number(limit)} ({severity.name})")
        text = " or ".join(parts)
        if rule.sigma:
            text += f", by more than {_number(rule.sigma)} of its errors"
    elif rule.kind == "state":
        text = f"`{rule.pv or rule.input}` is " + " or ".join(rule.states)
    elif rule.kind == "pv_severity":
        text = f"`{rule.pv}` is in alarm by its own record's limits (its severity)"
    else:
        text = "any of " + ", ".join(f"`{pv}`" for pv in rule.pvs) + " is disconnected"
    if debounce.delay:
        text += f", for {_number(debounce.delay)} s"
    if rule.gate is not None:
        gate = rule.gate
        template = GATES.get(gate.input)
        if template is not None and math.isfinite(gate.min) and not math.isfinite(gate.max):
            text += "; judged only " + template.format(min=gate.min)
        else:
            text += f"; judged only while `{gate.input}` is in [{gate.min:g}, {gate.max:g}]"
    return text


def _severity(rule: AlarmRule) -> str:
    """The severities ``rule`` raises: one, or the range of a limit rule's levels."""
    if rule.kind == "pv_severity":
        return "up to MAJOR"  # the PV's own, at most MAJOR for an analog record's limits
    if rule.kind != "limit":
        return rule.severity.name
    levels = [severity for _name, _limit, severity in rule.limits]
    low, high = min(levels), max(levels)
    return high.name if low == high else f"{low.name} to {high.name}"


def alarm_guide(rules: RuleSet) -> str:
    """Markdown: for every rule, its PV, severity, when it trips and what to do."""
    paragraphs: list[str] = []
    for rule in rules.rules:
        severity = _severity(rule)
        body = f"PV `MON:ALARM:{rule.name.upper()}`. Trips when {_condition(rule)}."
        if not rule.debounce.latch:
            body += " Not latched: it clears with its condition."
        if "stop_run" in rule.alarm_class.actions:
            body += " **Ends the run** (writes `RUN:STOP`)."
        if "command" in rule.alarm_class.actions:
            body += " Runs `" + " ".join(rule.alarm_class.command) + "`."
        guidance = rule.guidance or "no guidance in the rules file."
        paragraphs += [f"### `{rule.name}` ({severity})", body, f"**What to do:** {guidance}"]
    return "\n\n".join(paragraphs) + "\n"


def _pv_table() -> str:
    from mupnc.cli import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["pvs", "--prefix", "", "--markdown"])
    if status != 0:
        raise RuntimeError("mupnc pvs failed")
    return stdout.getvalue()


def blocks() -> dict[tuple[str, str], str]:
    """(file under the repository, marker name) -> the text between its markers."""
    from mupnc.cli import build_parser
    from mupnc.monitor.alarms.rules import load_rules

    return {
        ("docs/reference.md", "cli"): cli_table(build_parser()),
        ("docs/reference.md", "pvs"): _pv_table(),
        ("docs/shift.md", "alarms"): alarm_guide(load_rules()),
    }


def embedded(text: str, name: str) -> str:
    """The text between the line of ``<!-- NAME:begin`` and ``<!-- NAME:end -->``."""
    begin = text.index(f"<!-- {name}:begin")
    start = text.index("\n", begin) + 1
    return text[start : text.index(f"<!-- {name}:end -->", start)]


def replaced(text: str, name: str, block: str) -> str:
    """``text`` with the block between NAME's markers replaced by ``block``."""
    old = embedded(text, name)
    start = text.index(f"<!-- {name}:begin")
    start = text.index("\n", start) + 1
    return text[:start] + block + text[start + len(old) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mupnc.docs_text", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale blocks")
    args = parser.parse_args(argv)
    stale = []
    for (relative, name), block in blocks().items():
        path = ROOT / relative
        text = path.read_text()
        if embedded(text, name) == block:
            continue
        stale.append(f"{relative}: {name}")
        if not args.check:
            path.write_text(replaced(text, name, block))
    verb = "stale" if args.check else "rewritten"
    for item in stale:
        print(f"{verb}: {item}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
