"""The generated parts of the docs (:mod:`mupnc.docs_text`) equal what the code generates
now: the command table of docs/reference.md and the alarm guide of docs/shift.md (the PV
table: tests/test_pv_list.py)."""

from __future__ import annotations

from pathlib import Path

from mupnc.cli import build_parser
from mupnc.docs_text import alarm_guide, cli_table, embedded, main, replaced
from mupnc.monitor.alarms.rules import load_rules, parse_rules

DOCS = Path(__file__).resolve().parents[1] / "docs"
STALE = "is stale: run python -m mupnc.docs_text"


def test_the_references_command_table_is_generated_from_the_parser() -> None:
    table = embedded((DOCS / "reference.md").read_text(), "cli")
    assert table == cli_table(build_parser()), f"docs/reference.md's command table {STALE}"


def test_the_command_table_has_every_subcommand_and_is_one_table() -> None:
    table = cli_table(build_parser())
    rows = [line for line in table.splitlines() if line.startswith("| `mupnc ")]
    names = [row.split("`")[1] for row in rows]
    assert names[:3] == ["mupnc demo", "mupnc ioc", "mupnc pvs"]
    assert {"mupnc run new", "mupnc run close", "mupnc db", "mupnc alarms"} <= set(names)
    assert "mupnc run" not in names  # its actions have rows of their own
    # a Markdown table ends at its first blank line: no row may follow one
    body = table[: table.index("\n\n")].splitlines()
    assert len(body) == 2 + len(rows)
    assert all(line.count(" | ") == 2 for line in rows)  # pipes inside cells are escaped
    assert "[simulation options]" in rows[0] and "[--db DB]" not in table


def test_the_shift_guides_alarm_section_is_generated_from_the_rules() -> None:
    section = embedded((DOCS / "shift.md").read_text(), "alarms")
    assert section == alarm_guide(load_rules()), f"docs/shift.md's alarm guide {STALE}"


def test_every_shipped_alarm_has_its_meaning_and_action_in_the_guide() -> None:
    rules = load_rules()
    guide = alarm_guide(rules)
    for rule in rules.rules:
        assert rule.guidance, f"{rule.name} has no guidance in rules.toml"
        assert f"### `{rule.name}` (" in guide
        assert f"`MON:ALARM:{rule.name.upper()}`" in guide
        assert rule.guidance in guide


def test_the_guide_says_when_an_alarm_trips() -> None:
    rules = parse_rules(
        """
        [classes.stop]
        actions = ["log", "stop_run"]
        [alarms.counted]
        kind = "counter"
        input = "helicity_errors.phase_error"
        per = "windows"
        count = 2
        ring = 1200
        guidance = "Check the cabling."
        [alarms.limited]
        kind = "limit"
        input = "charge_asymmetry.recent"
        absolute = true
        sigma = 3.0
        high = 2.5e-4
        hihi = 2e-3
        class = "stop"
        latch = false
        gate = { input = "beam.on_for", min = 10.0 }
        """
    )
    guide = alarm_guide(rules)
    assert "### `counted` (MAJOR)" in guide
    assert "grows by 2 or more within 1200 windows (5 s at 240 Hz)" in guide
    assert "### `limited` (MINOR to MAJOR)" in guide  # its levels, not only the highest
    assert "|`charge_asymmetry.recent`| ≥ 0.00025 (MINOR)" in guide
    assert "by more than 3 of its errors; judged only once the beam has been on for 10 s" in guide
    assert "Not latched" in guide and "**Ends the run**" in guide
    assert "**What to do:** Check the cabling." in guide


def test_a_block_is_replaced_between_its_markers_only() -> None:
    text = "a\n<!-- x:begin: note -->\nold\n<!-- x:end -->\nb\n"
    new = replaced(text, "x", "new\nlines\n")
    assert new == "a\n<!-- x:begin: note -->\nnew\nlines\n<!-- x:end -->\nb\n"
    assert embedded(new, "x") == "new\nlines\n"


def test_the_check_finds_nothing_stale(capsys) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == ""
