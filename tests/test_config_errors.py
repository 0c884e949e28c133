"""Malformed channel maps, alarm rules and run configurations: the real ``mupnc`` console
script exits 2 with one line on stderr naming the file and the line, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import named_line, one_error_line, run_all

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
        "coil-with-acceptance",
        'mode = "alr"\n'
        + GOOD_CHANNEL
        + '[[channels]]\nname = "c"\nrole = "coil"\nacceptance = 0.1\n',
        9,
        "channel 'c': 'acceptance' is for detectors; a modulation coil has none",
    ),
    (
        "coil-unit",
        'mode = "alr"\n' + GOOD_CHANNEL + '[[channels]]\nname = "c"\nrole = "coil"\nunit = "A"\n',
        9,
        "channel 'c': 'unit' must be one of ('uA', 'mA'), got 'A'",
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
    ("counter-without-input", '[alarms.x]\nkind = "counter"\n', 1, "counter alarm needs input"),
]


RUN_FILES = [
    ("toml-syntax", 'mode = "alr\n', 1, "not valid TOML"),
    ("unknown-table", '[detectr]\npreset = "sm"\n', 1, "unknown table [detectr]"),
    ("unknown-key", "[beam]\nrate = 1e8\nbrightness = 3\n", 3, "[beam] brightness: unknown key"),
    ("unknown-top-key", 'mode = "alr"\nscheme = "slow"\n', 2, "scheme: unknown key"),
    ("wrong-type", '[beam]\npolarization = "high"\n', 2, "[beam] polarization: must be a number"),
    ("polarization-above-1", "[beam]\npolarization = 1.2\n", 2, "polarization must lie in"),
    ("no-dilution", "[detector]\nsignal_fraction = 0.0\n", 2, "signal_fraction must lie in"),
    ("negative-rate", "[beam]\nrate = -5.0\n", 2, "[beam] rate: muon_rate must lie in"),
    ("unknown-scheme", '[reversal]\nscheme = "wobble"\n', 2, "scheme must be one of"),
    ("one-kick-turn", "[reversal]\nkick_turns = [1]\n", 2, "must be two integers"),
    (
        "rotator-pattern",
        '[reversal]\nscheme = "slow"\nrotator_pattern = "triplet"\n',
        3,
        "[reversal] rotator_pattern: rotator_pattern must be one of",
    ),
    (
        "kick-precession",
        '[reversal]\nscheme = "kick"\nkick_precession = -12.0\n',
        3,
        "kick_precession must lie in (0, 180]",
    ),
    (
        "no-flip-at-29-mev",
        '[reversal]\nscheme = "kick"\nkick_turns = [0, 15]\n',
        3,
        "at 0.435 deg/turn the first must give",
    ),
    (
        "polarimeter-analysing-power",
        "\n[polarimeter]\nenabled = true\nanalysing_power = 1.5\n",
        4,
        "[polarimeter] analysing_power: analysing_power must lie in (0, 1], got 1.5",
    ),
    (
        "polarimeter-fault-alone",
        "[polarimeter]\nenabled = true\nfault_at = 30.0\n",
        3,
        "fault_at and fault_polarization_minus go together",
    ),
    ("polarimeter-unknown-key", "[polarimeter]\nalpha = 0.3\n", 2, "alpha: unknown key"),
    (
        "modulation-coil-time",
        "[modulation]\nenabled = true\nperiod = 8.0\n",
        3,
        "[modulation] period: a cycle of 5 coils x 2 s = 10 s must be shorter than the period",
    ),
    (
        "modulation-unknown-coil",
        "[modulation]\nenabled = true\n[modulation.response]\ncoil_6 = { x = 1e-3 }\n",
        4,
        "[modulation.response] coil_6: the channel map has no coil channel 'coil_6'",
    ),
    ("momentum-range", "[beam]\nmomentum = 5.0\n", 2, "[beam] momentum: momentum must lie in"),
    (
        "mass-number-below-z",
        "[detector]\nz = 36\nmass_number = 20.0\n",
        3,
        "[detector] mass_number: mass_number must lie in [z, 3 z]",
    ),
    ("mass-number-type", '[detector]\nmass_number = "heavy"\n', 2, "must be a number"),
    (
        "decay-electrons-in-alr",
        "[detector]\ndecay_electron_fraction = 0.1\n",
        2,
        "decay_electron_fraction applies to mode afb only",
    ),
    (
        "decay-electrons-and-signal-above-1",
        'mode = "afb"\n[detector]\nsignal_fraction = 0.9\ndecay_electron_fraction = 0.2\n',
        4,
        "[detector] decay_electron_fraction: decay_electron_fraction must lie in [0, 1 - sig",
    ),
]
MAP = "--channel-map"
LIST_PVS = ("ioc", "--list-pvs", MAP)
MONITOR = ("monitor", "--alarm-rules")
SIM_CONFIG = ("sim", "--windows", "10", "--config")


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """Every case run once: ``{(kind, case): (file, CompletedProcess)}``."""
    folder = tmp_path_factory.mktemp("config")
    jobs, files = {}, {}

    def add(key: tuple[str, str], path: Path, *args: str) -> None:
        files[key] = path
        jobs[key] = (["--db", f"sqlite:///{folder / 'unused.db'}", *args, str(path)], None)

    for case, content, *_ in CHANNEL_MAPS:
        add(("map", case), write(folder / f"map-{case}.toml", content), *LIST_PVS)
    for case, content, *_ in ALARM_RULES:
        add(("rules", case), write(folder / f"rules-{case}.toml", content), *MONITOR)
    other_mode = write(folder / "alr.toml", '# A_LR map\n\nmode = "alr"\n' + GOOD_CHANNEL)
    add(("map", "other-mode"), other_mode, "sim", "--windows", "10", "--mode", "afb", MAP)
    (folder / "a-folder").mkdir()
    for case, path in (("missing", folder / "absent.toml"), ("directory", folder / "a-folder")):
        add(("map", case), path, "demo", "--duration", "1", MAP)
    add(("rules", "missing"), folder / "absent-rules.toml", *MONITOR)
    for case, content, *_ in RUN_FILES:
        add(("run", case), write(folder / f"run-{case}.toml", content), *SIM_CONFIG)
    add(("run", "missing"), folder / "absent-run.toml", *SIM_CONFIG)
    add(("map", "valid"), write(folder / "valid.toml", 'mode = "alr"\n' + GOOD_CHANNEL), *LIST_PVS)
    done = run_all(jobs, folder)
    return {key: (files[key], done[key]) for key in jobs}


def check_one_line(result, path: Path, line: int | None, words: str) -> None:
    message = one_error_line(result, 2)
    assert message.startswith(f"mupnc: error: {path}"), message
    assert named_line(message) == line, message
    assert words in message


@pytest.mark.parametrize(
    ("case", "line", "words"),
    [(c[0], *c[2:]) for c in CHANNEL_MAPS],
    ids=[c[0] for c in CHANNEL_MAPS],
)
def test_malformed_channel_map_names_file_and_line(results, case, line, words):
    check_one_line(*reversed(results["map", case]), line, words)


def test_channel_map_for_the_other_mode_names_its_mode_line(results):
    check_one_line(
        *reversed(results["map", "other-mode"]), 3, "channel map is for mode 'alr', not 'afb'"
    )


@pytest.mark.parametrize(
    ("case", "reason"), [("missing", "No such file"), ("directory", "Is a directory")]
)
def test_unreadable_channel_map_names_the_file(results, case, reason):
    check_one_line(*reversed(results["map", case]), None, f"cannot read the channel map: {reason}")


def test_a_valid_channel_map_is_taken(results):
    _, result = results["map", "valid"]
    assert result.returncode == 0, result.stderr
    assert "DAQ:SCALER:PLUS" in result.stdout


@pytest.mark.parametrize(
    ("case", "line", "words"),
    [(c[0], *c[2:]) for c in ALARM_RULES],
    ids=[c[0] for c in ALARM_RULES],
)
def test_malformed_alarm_rules_name_file_and_line(results, case, line, words):
    check_one_line(*reversed(results["rules", case]), line, words)


def test_missing_alarm_rules_file_is_named(results):
    check_one_line(
        *reversed(results["rules", "missing"]), None, "cannot read the alarm rules: No such file"
    )


@pytest.mark.parametrize(
    ("case", "line", "words"),
    [(c[0], *c[2:]) for c in RUN_FILES],
    ids=[c[0] for c in RUN_FILES],
)
def test_malformed_run_configuration_names_file_line_and_key(results, case, line, words):
    check_one_line(*reversed(results["run", case]), line, words)


def test_missing_run_configuration_is_named(results):
    check_one_line(*reversed(results["run", "missing"]), None, "cannot read the run configuration")
