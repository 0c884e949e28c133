"""Beam modulation in the simulator and the DAQ stream (pure, no CA): the coils' schedule,
the flag, the coil words, the beam's response and the ``[modulation]`` run-file table."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mupnc.daq.beamline import BEAM_VARIABLES, BeamLine
from mupnc.daq.blocks import FLAG_MODULATION, WindowBlock
from mupnc.daq.channel_map import (
    COIL_UNITS,
    NOT_DETECTORS,
    Channel,
    ChannelMap,
    ChannelMapError,
    default_channel_map,
    load_channel_map,
)
from mupnc.run_file import RunFileError, load_run_file
from mupnc.runs import run_config
from mupnc.sim.beamline import BeamlineConfig
from mupnc.sim.modulation import DEFAULT_RESPONSE, ModulationConfig
from mupnc.sim.source import SourceConfig, SourceConfigError, WindowSource

RATE = 240.0
ON = ModulationConfig(enabled=True)
COILS = tuple(DEFAULT_RESPONSE)
PER_COIL = 480  # 2 s at 240 Hz
EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "modulation.toml"


def _expected_schedule(seq: np.ndarray, period_windows: int, coil_windows: int, n: int):
    """Integer truth: inside a cycle, driven coil and window within the coil."""
    cycle, into = np.divmod(seq, period_windows)
    coil, within = np.divmod(into, coil_windows)
    inside = (cycle >= 1) & (coil < n)
    return inside, coil, within


def _blocks(config: SourceConfig, sizes, start: int = 0):
    source = WindowSource(config)
    source.skip_to(start)
    return [source.next_block_of(n) for n in sizes]


def _joined(blocks) -> tuple[WindowBlock, np.ndarray, np.ndarray]:
    block = WindowBlock.concatenate([b.block for b in blocks])
    beam = np.concatenate([b.beam for b in blocks])
    current = np.concatenate([b.coil_current for b in blocks])
    return block, beam, current


# -- the schedule --------------------------------------------------------------------------


def test_cycles_start_every_period_and_drive_one_coil_at_a_time_as_a_sine():
    seq = np.arange(0, 3 * 60 * 240 + 3000)
    inside, current = ON.schedule(seq, RATE)
    want, coil, within = _expected_schedule(seq, 60 * 240, PER_COIL, len(COILS))
    np.testing.assert_array_equal(inside, want)
    assert not inside[: 60 * 240].any()  # no cycle at the start of the run
    assert inside[14400] and inside[14400 + 2399] and not inside[14400 + 2400]
    assert inside.sum() == 3 * 5 * PER_COIL
    assert (np.count_nonzero(current, axis=1) <= 1).all()  # one coil at a time
    assert not current[~inside].any()
    rows = np.flatnonzero(inside)
    driven = current[rows, coil[rows]]
    np.testing.assert_allclose(
        driven, 100.0 * np.sin(2 * np.pi * 5.0 * within[rows] / RATE), rtol=0, atol=1e-9
    )
    others = current[rows].copy()
    others[np.arange(rows.size), coil[rows]] = 0.0
    assert not others.any()
    # each coil is driven in its own 2 s: 10 periods of 5 Hz, peaks at +-100 mA
    for k in range(len(COILS)):
        one = current[rows[coil[rows] == k], k]
        assert one.size == 3 * PER_COIL and one.max() == pytest.approx(100.0)


def test_a_step_drives_plus_then_minus_the_amplitude():
    config = ModulationConfig(enabled=True, shape="step", amplitude=40.0, period=20.0)
    seq = np.arange(0, 2 * 20 * 240 + 100)
    inside, current = config.schedule(seq, RATE)
    want, coil, within = _expected_schedule(seq, 20 * 240, PER_COIL, len(COILS))
    np.testing.assert_array_equal(inside, want)
    rows = np.flatnonzero(inside)
    np.testing.assert_array_equal(
        current[rows, coil[rows]], np.where(within[rows] < PER_COIL // 2, 40.0, -40.0)
    )
    assert (np.count_nonzero(current, axis=1) == inside).all()


def test_the_flag_is_set_on_the_cycle_windows_exactly():
    config = SourceConfig(seed=3, modulation=replace(ON, period=12.0))
    block, _, current = _joined(_blocks(config, [4000, 2000, 3000, 2520]))
    want, _, _ = _expected_schedule(block.seq, 12 * 240, PER_COIL, len(COILS))
    flagged = (block.flags & FLAG_MODULATION) != 0
    np.testing.assert_array_equal(flagged, want)
    assert flagged.sum() == 3 * 2400
    assert not current[~flagged].any() and current[flagged].any()


def test_the_schedule_is_the_same_whatever_the_cut_into_blocks():
    config = SourceConfig(seed=8, modulation=replace(ON, period=11.0, shape="step"))
    whole = _blocks(config, [9000], start=2500)
    pieces = _blocks(config, [1, 7, 480, 1000, 333, 2179, 5000], start=2500)
    one, _, one_current = _joined(whole)
    cut, _, cut_current = _joined(pieces)
    np.testing.assert_array_equal(one.seq, cut.seq)
    np.testing.assert_array_equal(one.flags, cut.flags)
    coils = config.resolved_channel_map().coils
    np.testing.assert_array_equal(one.counts[:, coils], cut.counts[:, coils])
    np.testing.assert_array_equal(one_current, cut_current)
    assert ((one.flags & FLAG_MODULATION) != 0).any()
    # the push on the beam is per window: the same bits in one piece or in many
    source = WindowSource(config)
    beam = np.random.default_rng(1).standard_normal((9000, 5))
    moved = source.modulation.moved(beam, one_current)
    parts = [
        source.modulation.moved(beam[a:b], one_current[a:b])
        for a, b in zip([0, 1, 8, 3000], [1, 8, 3000, 9000], strict=True)
    ]
    np.testing.assert_array_equal(moved, np.concatenate(parts))
    assert not np.array_equal(moved, beam)


# -- the beam follows, the coil words tell the current -------------------------------------


def test_the_beam_moves_by_current_times_response_and_the_words_decode_to_the_current():
    start = 60 * 240
    on = _blocks(SourceConfig(seed=5, modulation=ON), [1200, 1200], start)
    off = _blocks(SourceConfig(seed=5), [1200, 1200], start)
    _, beam_on, current = _joined(on)
    block, beam_off, _ = _joined(off)
    matrix = np.array([[DEFAULT_RESPONSE[c].get(v, 0.0) for v in BEAM_VARIABLES] for c in COILS])
    np.testing.assert_allclose(beam_on - beam_off, current @ matrix, rtol=1e-9, atol=1e-15)
    assert np.abs(beam_on - beam_off)[:, 0].max() == pytest.approx(0.1, rel=1e-3)  # 100 um
    assert not block.counts[:, default_channel_map("alr").coils].any()  # no modulation: 0
    words = _joined(on)[0].counts[:, default_channel_map("alr").coils]
    assert np.abs(words * COIL_UNITS["uA"] - current).max() <= 0.5e-3  # round(I / 1 uA)
    assert np.abs(words).max() == 100_000  # 100 mA in uA


def test_the_words_follow_the_coil_unit_and_name_whatever_the_map_order():
    base = default_channel_map("alr")
    others = tuple(c for c in base.channels if c.role != "coil")
    coils = (  # coil_5 first, in mA; coil_9 is not driven; coil_1 ... coil_4 absent
        Channel("coil_5", "coil", 0.0, unit="mA"),
        Channel("coil_9", "coil", 0.0, unit="uA"),
    )
    channel_map = ChannelMap("alr", others + coils)
    response = {"coil_5": {"x": 1e-3}, "coil_9": {}}  # coil_9 has a word but moves nothing
    with pytest.raises(SourceConfigError, match=r"modulation response\.coil_1: the channel map"):
        SourceConfig(channel_map=channel_map, modulation=ON)
    config = SourceConfig(
        channel_map=channel_map,
        modulation=ModulationConfig(enabled=True, shape="step", amplitude=2.6, response=response),
    )
    (simulated,) = _blocks(config, [960], start=60 * 240)
    words = simulated.block.counts[:, -2:]
    np.testing.assert_array_equal(words[:480, 0], np.where(np.arange(480) < 240, 3, -3))
    assert not words[480:, 0].any() and not words[:480, 1].any()
    np.testing.assert_array_equal(words[480:, 1], np.where(np.arange(480) < 240, 2600, -2600))


def test_a_stuck_coil_shows_its_current_but_the_beam_does_not_move():
    start = 60 * 240
    stuck = replace(ON, stuck=("coil_3",))
    on = _blocks(SourceConfig(seed=6, modulation=stuck), [2400], start)[0]
    off = _blocks(SourceConfig(seed=6), [2400], start)[0]
    third = slice(2 * PER_COIL, 3 * PER_COIL)
    coil_3 = default_channel_map("alr").coils[2]
    assert np.abs(on.block.counts[third, coil_3]).max() == 100_000  # the drive shows
    np.testing.assert_array_equal(on.beam[third], off.beam[third])  # the beam does not move
    assert not np.array_equal(on.beam[:PER_COIL], off.beam[:PER_COIL])  # coil_1 works


def _slopes(simulated) -> np.ndarray:
    """Per coil (its 2 s), the beam variables measured by the monitors fitted on the coil
    current read back: ``(coils, variables)`` per mA, and their statistical errors."""
    channel_map = default_channel_map("alr")
    line = BeamLine.of(channel_map)
    measured = line.at_target(simulated.block.counts)
    current = simulated.block.counts[:, channel_map.coils] * COIL_UNITS["uA"]
    slopes, errors = [], []
    for k in range(len(COILS)):
        rows = slice(k * PER_COIL, (k + 1) * PER_COIL)
        design = np.column_stack([np.ones(PER_COIL), current[rows, k]])
        fit, residual, *_ = np.linalg.lstsq(design, measured[rows], rcond=None)
        cov = np.linalg.inv(design.T @ design)[1, 1]
        slopes.append(fit[1])
        errors.append(np.sqrt(residual / (PER_COIL - 2) * cov))
    return np.array(slopes), np.array(errors)


def test_the_shipped_monitors_resolve_each_response_in_one_coil_period():
    """One 2 s coil period at 240 Hz: each non-zero response entry is measured to better
    than 3 % (statistical error), within 4 errors of the truth; zeros stay compatible."""
    (simulated,) = _blocks(SourceConfig(seed=11, modulation=ON), [2400], start=60 * 240)
    slopes, errors = _slopes(simulated)
    truth = ON.matrix()
    nonzero = truth != 0
    assert (errors[nonzero] / np.abs(truth[nonzero]) < 0.03).all(), errors / truth
    assert (np.abs(slopes - truth) < 4 * errors).all(), (slopes - truth) / errors
    assert np.linalg.cond(truth / np.array([0.02, 0.02, 0.005, 0.005, 1e-5])) < 10


def test_the_detectors_respond_through_their_configured_sensitivity():
    """x = 0.1 per mm: a step of +-100 um from coil_1 changes the yield by +-1 %; a stuck
    coil_1 changes nothing."""

    def ratio(modulation: ModulationConfig) -> float:
        config = SourceConfig(
            seed=2,
            muon_rate=1e10,
            beamline=BeamlineConfig(sensitivity={"default": {"x": 0.1}}),
            modulation=modulation,
        )
        (simulated,) = _blocks(config, [PER_COIL], start=60 * 240)
        yields = simulated.detector_counts.sum(axis=1) / simulated.block.beam_monitor
        return float(yields[:240].mean() / yields[240:].mean())

    step = replace(ON, shape="step")
    assert ratio(step) == pytest.approx(1.01 / 0.99, abs=2e-3)
    assert ratio(replace(step, stuck=("coil_1",))) == pytest.approx(1.0, abs=2e-3)


# -- nothing changes without modulation ----------------------------------------------------


def test_disabled_modulation_changes_nothing_whatever_its_other_settings():
    other = ModulationConfig(
        period=7.0, coil_time=1.0, shape="step", amplitude=5.0, stuck=("coil_2",)
    )
    for mode, scheme in (("alr", "fast"), ("afb", "slow")):
        plain = _blocks(SourceConfig(mode=mode, scheme=scheme, seed=4), [100, 3000, 17], 0)
        quiet = _blocks(
            SourceConfig(mode=mode, scheme=scheme, seed=4, modulation=other), [100, 3000, 17], 0
        )
        for a, b in zip(plain, quiet, strict=True):
            for name in a.block.__dataclass_fields__:
                x, y = getattr(a.block, name), getattr(b.block, name)
                assert np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype, name
            np.testing.assert_array_equal(a.beam, b.beam)
            assert not (a.block.flags & FLAG_MODULATION).any()
            assert not a.block.counts[:, a.block.counts.shape[1] - 5 :].any()


def test_coil_channels_leave_the_detector_and_monitor_columns_unchanged():
    """The shipped map without its coils gives the same detector and monitor words, bit for
    bit: the coils draw no random numbers."""
    for mode in ("alr", "afb"):
        full = default_channel_map(mode)
        bare = ChannelMap(mode, tuple(c for c in full.channels if c.role != "coil"))
        assert len(full.coils) == 5 and not bare.coils
        sensitivity = BeamlineConfig(sensitivity={"default": {"x": 0.1, "y": -0.05}})
        with_coils = _blocks(SourceConfig(mode=mode, seed=9, beamline=sensitivity), [500, 700])
        without = _blocks(
            SourceConfig(mode=mode, seed=9, channel_map=bare, beamline=sensitivity), [500, 700]
        )
        for a, b in zip(with_coils, without, strict=True):
            kept = [full.names.index(n) for n in bare.names]
            np.testing.assert_array_equal(a.block.counts[:, kept], b.block.counts)
            assert not a.block.counts[:, full.coils].any()
            np.testing.assert_array_equal(a.detector_counts, b.detector_counts)
            np.testing.assert_array_equal(a.block.beam_monitor, b.block.beam_monitor)


# -- the channel map ------------------------------------------------------------------------


def test_a_coil_is_not_a_detector():
    for mode in ("alr", "afb"):
        channel_map = default_channel_map(mode)
        coils = [c for c in channel_map.channels if c.role == "coil"]
        assert [c.name for c in coils] == [f"coil_{i}" for i in range(1, 6)]
        assert all(c.unit == "uA" and c.ma_per_count == 1e-3 for c in coils)
        assert channel_map.coils == channel_map.indices("coil")
        assert not set(channel_map.coils) & set(channel_map.detector_columns)
        assert {c.role for c in channel_map.detectors().channels}.isdisjoint(NOT_DETECTORS)
        assert ChannelMap.from_json(channel_map.to_json()) == channel_map
        assert '"name": "coil_1", "role": "coil", "acceptance": 0.0, "unit": "uA"}' in (
            channel_map.to_json()
        )


def test_a_coil_has_no_sensitivity():
    with pytest.raises(
        SourceConfigError, match=r"sensitivity\.coil_1: 'coil_1' is a modulation coil"
    ):
        SourceConfig(beamline=BeamlineConfig(sensitivity={"coil_1": {"x": 0.1}}))


@pytest.mark.parametrize(
    "entry, line, message",
    [
        ('role = "coil"\nunit = "A"\n', 5, "channel 'c': 'unit' must be one of ('uA', 'mA')"),
        ('role = "coil"\nacceptance = 0.1\n', 5, "'acceptance' is for detectors; a modulation"),
        ('role = "coil"\naxis = "x"\n', 5, "'axis' is a key of beam position monitors"),
        ('role = "coil"\ncos_theta = 0.5\n', 5, "'cos_theta' is for detectors"),
        (
            'role = "scatter"\nacceptance = 1e-4\nunit = "uA"\n',
            6,
            "'unit' is a key of beam position monitors and modulation coils",
        ),
    ],
)
def test_a_misused_coil_channel_is_refused_in_one_line(tmp_path, entry, line, message):
    path = tmp_path / "map.toml"
    path.write_text(
        f'mode = "alr"\n[[channels]]\nname = "c"\n{entry}'
        '[[channels]]\nname = "s"\nrole = "scatter"\nacceptance = 1e-4\n'
    )
    with pytest.raises(ChannelMapError) as err:
        load_channel_map(path)
    assert str(err.value).startswith(f"{path}, line {line}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


# -- the run file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("[modulation]\nwobble = 1\n", "line 2: [modulation] wobble: unknown key (known: enab"),
        ('[modulation]\nenabled = "yes"\n', "line 2: [modulation] enabled: must be a boolean"),
        ('[modulation]\nperiod = "long"\n', "line 2: [modulation] period: must be a number"),
        (
            "[modulation]\nenabled = true\namplitude = -5.0\n",
            "line 3: [modulation] amplitude: amplitude must be a number > 0 mA, got -5.0",
        ),
        (
            '[modulation]\nshape = "square"\n',
            "line 2: [modulation] shape: shape must be one of ('sine', 'step'), got 'square'",
        ),
        (
            "[modulation]\nperiod = 60.0\ncoil_time = 20.0\n",
            "line 3: [modulation] coil_time: a cycle of 5 coils x 20 s = 100 s must be shorter"
            " than the period 60 s",
        ),
        (
            '[modulation]\nstuck = ["coil_9"]\n',
            "line 2: [modulation] stuck: unknown coil 'coil_9' (known: coil_1, coil_2,",
        ),
        ('[modulation]\nstuck = "coil_1"\n', "line 2: [modulation] stuck: must be a list of coil"),
        (
            "[modulation]\nenabled = true\nfrequency = 200.0\n",
            "line 3: [modulation] frequency: frequency 200 Hz must be below half the window"
            " rate (120 Hz)",
        ),
        (
            "[modulation]\nenabled = true\n\n[modulation.response]\ncoil_1 = { z = 1e-3 }\n",
            "line 5: [modulation.response] coil_1: unknown beam variable 'z'",
        ),
        (
            '[modulation.response]\ncoil_1 = { x = "big" }\n',
            "line 2: [modulation.response] coil_1: must be a number, got 'big'",
        ),
        (
            "[modulation]\nenabled = true\n[modulation.response]\ncoil_1 = { x = 1e-3 }\n"
            "coil_7 = { y = 1e-3 }\n",
            "line 5: [modulation.response] coil_7: the channel map has no coil channel 'coil_7'",
        ),
        ("modulation = 3\n", "line 1: modulation: must be a table [modulation]"),
        (
            "[beamline.sensitivity]\ncoil_2 = { x = 1e-3 }\n",
            "line 2: [beamline.sensitivity] coil_2: 'coil_2' is a modulation coil, not a detector",
        ),
    ],
)
def test_a_bad_modulation_table_is_refused_in_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(RunFileError) as err:
        load_run_file(path)
    assert str(err.value).startswith(f"{path}, {message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_the_modulation_table_reaches_the_simulation_and_the_stored_configuration(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        '[modulation]\nenabled = true\nperiod = 20.0\ncoil_time = 1.5\nshape = "step"\n'
        'amplitude = 50.0\nstuck = ["coil_2"]\n'
        "[modulation.response]\ncoil_2 = { y = 2e-3 }\ncoil_1 = { x = 1e-3, dpp = 1e-7 }\n"
    )
    config = SourceConfig(**load_run_file(path))
    m = config.modulation
    assert (m.enabled, m.period, m.coil_time, m.shape, m.amplitude) == (
        True, 20.0, 1.5, "step", 50.0,
    )  # fmt: skip
    assert m.coils == ("coil_2", "coil_1") and m.stuck == ("coil_2",)
    assert m.response["coil_1"] == {"x": 1e-3, "dpp": 1e-7}
    stored = run_config(config)["modulation"]
    assert stored["enabled"] is True and stored["response"]["coil_2"] == {"y": 2e-3}
    assert stored["stuck"] == ["coil_2"] and stored["frequency"] == 5.0
    assert json.loads(json.dumps(stored)) == stored  # as stored and read back (autosave)
    assert run_config(SourceConfig())["modulation"]["enabled"] is False


def test_the_documented_example_modulates_every_30_s():
    config = SourceConfig(**load_run_file(EXAMPLE))
    assert config.modulation.enabled and config.modulation.period == 30.0
    assert config.muon_rate == 1e10 and config.scheme == "fast" and config.mode == "alr"
    (simulated,) = _blocks(config, [2400], start=30 * 240)
    assert ((simulated.block.flags & FLAG_MODULATION) != 0).all()
    # the detectors see coil_1's 100 um in x through the 0.1/mm sensitivity
    assert np.ptp(simulated.beam[:PER_COIL, 0]) > 0.18
