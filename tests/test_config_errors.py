"""Malformed channel maps and alarm rules: the real ``mupnc`` console script exits 2 with one
line on stderr naming the file and the line, and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

MUPNC = str(Path(sys.executable).with_name("mupnc"))

GOOD_CHANNEL = '[[channels]]\nname = "a"\nrole = "scatter"\nacceptance = 0.1\n'

# (id, file content, line the error must name (None: no line, e.g. a missing file), words)
CHANNEL_MAPS = [
    ("toml-syntax", 'mode = "alr"\n[[channels]\nname = "a"\n', 2, "not valid TOML"),
    ("unterminated-string", 'mode = "alr\n' + GOOD_CHANNEL, 1, "not valid TOML"),
    ("duplicate-key", 'mode = "alr"\n' + GOOD_CHANNEL + 'name = "b"\n', 6, "not valid TOML"),
    ("empty-file", "", 1, "empty channel map"),
    ("only-comments", "# nothing here\n\n", 1, "empty channel map"),
    ("binary-garbage", b'mode = "alr"\n\n\x89PNG\r\n\x1a\n\x00\xff\xfe', 3, "not a TOML text"),
    ("nul-byte", 'mode = "alr"\n[[channels]]\nname = "a\x00"\n', 3, "not valid TOML"),
    ("missing-mode", GOOD_CHANNEL, 1, "'mode' is missing"),
    ("unknown-mode", 'mode = "lr"\n' + GOOD_CHANNEL, 1, "'mode' must be one of"),
    ("mode-wrong-type", "mode = 1\n" + GOOD_CHANNEL, 1, "'mode' must be one of"),
    (
        "unknown-top-key",
        'mode = "alr"\ndetector = "x"\n' + GOOD_CHANNEL,
        2,
        "unknown key 'detector'",
    ),
    ("no-channels", 'mode = "alr"\n', 1, "needs at least one [[channels]]"),
    ("channels-not-tables", 'mode = "alr"\nchannels = [1, 2]\n', 2, "must be a table"),
    (
        "unknown-channel-key",
        'mode = "alr"\n' + GOOD_CHANNEL + 'colour = "red"\n',
        6,
        "channel 'a': unknown key 'colour'",
    ),
    (
        "missing-role",
        'mode = "alr"\n' + GOOD_CHANNEL + '[[channels]]\nname = "b"\nacceptance = 0.1\n',
        6,
        "channel 'b': 'role' is missing",
    ),
    (
        "duplicate-name",
        'mode = "alr"\n' + GOOD_CHANNEL * 2,
        7,
        "channel 'a': the name is already taken",
    ),
    ("name-wrong-type", 'mode = "alr"\n' + GOOD_CHANNEL.replace('"a"', "7"), 3, "'name' must"),
    ("role-unknown", 'mode = "alr"\n' + GOOD_CHANNEL.replace("scatter", "sideways"), 4, "'role'"),
    (
        "acceptance-string",
        'mode = "alr"\n' + GOOD_CHANNEL.replace("0.1", '"high"'),
        5,
        "'acceptance' must be a number",
    ),
    ("acceptance-bool", 'mode = "alr"\n' + GOOD_CHANNEL.replace("0.1", "true"), 5, "acceptance"),
    ("acceptance-nan", 'mode = "alr"\n' + GOOD_CHANNEL.replace("0.1", "nan"), 5, "acceptance"),
    (
        "cos-theta-string",
        'mode = "alr"\n' + GOOD_CHANNEL + 'cos_theta = "up"\n',
        6,
        "'cos_theta' must be a number",
    ),
    (
        "inline-table-wrong-type",
        'mode = "alr"\nchannels = [{name = "a", role = "scatter", acceptance = []}]\n',
        2,
        "'acceptance' must be a number",
    ),
    (
        "role-needed-for-mode",
        'mode = "afb"\n' + GOOD_CHANNEL.replace("scatter", "forward"),
        1,
        "needs a channel with role 'backward'",
    ),
]

ALARM_RULES = [
    ("toml-syntax", '[alarms.a]\nkind = "counter\n', 2, "not valid TOML"),
    ("duplicate-table", '[alarms.a]\nkind = "counter"\n[alarms.a]\n', 3, "not valid TOML"),
    ("empty-file", "", 1, "no [alarms.NAME] table"),
    ("binary-garbage", b"[alarms.a]\n\xff\xfe\x00\x01", 2, "not a TOML text"),
    ("wrong-type", '[alarms.a]\nkind = "counter"\ninput = 5\n', 3, "input must be a string"),
    ("unknown-key", '[alarms.a]\nkind = "counter"\ncolour = 1\n', 3, "unknown key 'colour'"),
    ("unknown-table", "[alerts.a]\n", 1, "unknown table"),
    ("missing-required", '[alarms.a]\nkind = "limit"\n', 1, "needs input"),
]


def run_mupnc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MUPNC, "--db", f"sqlite:///{cwd / 'unused.db'}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def check_one_line(result: subprocess.CompletedProcess, path: Path, line: int | None, words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    message = lines[0]
    assert message.startswith(f"mupnc: error: {path}"), message
    found = re.search(r", line (\d+):", message)
    if line is None:
        assert found is None, message
    else:
        assert found is not None and int(found.group(1)) == line, message
    assert words in message


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("content", "line", "words"), [c[1:] for c in CHANNEL_MAPS], ids=[c[0] for c in CHANNEL_MAPS]
)
def test_malformed_channel_map_names_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "map.toml", content)
    result = run_mupnc("ioc", "--list-pvs", "--channel-map", str(path), cwd=tmp_path)
    check_one_line(result, path, line, words)


def test_channel_map_for_the_other_mode_names_its_mode_line(tmp_path):
    path = write(tmp_path / "map.toml", '# A_LR map\n\nmode = "alr"\n' + GOOD_CHANNEL)
    result = run_mupnc(
        "sim", "--windows", "10", "--mode", "afb", "--channel-map", str(path), cwd=tmp_path
    )
    check_one_line(result, path, 3, "channel map is for mode 'alr', not 'afb'")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_channel_map_names_the_file(tmp_path, kind):
    path = tmp_path / "map.toml"
    if kind == "directory":
        path.mkdir()
    result = run_mupnc("demo", "--channel-map", str(path), "--duration", "1", cwd=tmp_path)
    reason = "No such file" if kind == "missing" else "Is a directory"
    check_one_line(result, path, None, f"cannot read the channel map: {reason}")


def test_a_valid_channel_map_is_taken(tmp_path):
    path = write(tmp_path / "map.toml", 'mode = "alr"\n' + GOOD_CHANNEL)
    result = run_mupnc("ioc", "--list-pvs", "--channel-map", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "DAQ:SCALER:PLUS" in result.stdout


@pytest.mark.parametrize(
    ("content", "line", "words"), [c[1:] for c in ALARM_RULES], ids=[c[0] for c in ALARM_RULES]
)
def test_malformed_alarm_rules_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path / "rules.toml", content)
    result = run_mupnc("monitor", "--alarm-rules", str(path), cwd=tmp_path)
    check_one_line(result, path, line, words)


def test_missing_alarm_rules_file_is_named(tmp_path):
    path = tmp_path / "absent.toml"
    result = run_mupnc("monitor", "--alarm-rules", str(path), cwd=tmp_path)
    check_one_line(result, path, None, "cannot read the alarm rules: No such file")
