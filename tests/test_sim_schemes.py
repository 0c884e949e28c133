"""Simulator timing, reversal schemes, beam model and configuration errors (sim/)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from mupnc.daq.blocks import FLAG_PAIR_SYNC, FLAG_PATTERN_SYNC, FLAG_SETTLE
from mupnc.daq.scheme import RotatorSequence
from mupnc.sim.reversal import MAGIC_MOMENTUM, precession_per_turn
from mupnc.sim.source import SimulatedBlock, SourceConfig, SourceConfigError, WindowSource

QUIET = {"intensity_jitter": 0.0, "bcm_resolution": 0.0}


def run(config: SourceConfig, n_windows: int, block: int = 97) -> list[SimulatedBlock]:
    source = WindowSource(config)
    out = []
    while source.next_seq < n_windows:
        out.append(source.next_block_of(min(block, n_windows - source.next_seq)))
    return out


def joined(blocks: list[SimulatedBlock], name: str) -> np.ndarray:
    if hasattr(blocks[0].block, name):
        return np.concatenate([getattr(b.block, name) for b in blocks])
    return np.concatenate([getattr(b, name) for b in blocks])


@pytest.mark.parametrize("rate", [30.0, 240.0, 1920.0, 20_000.0])
def test_window_timing_and_mps_counter(rate: float) -> None:
    config = SourceConfig(window_rate=rate, t_settle=10e-6, **QUIET)
    assert config.t_stable == pytest.approx(1 / rate - 10e-6)
    blocks = run(config, 1000)
    seq = joined(blocks, "seq")
    np.testing.assert_array_equal(seq, np.arange(1000))  # MPS counter, no gaps
    assert [b.block.block_number for b in blocks] == list(range(len(blocks)))
    # muons are integrated over T_stable only
    np.testing.assert_allclose(joined(blocks, "muons"), config.muon_rate * config.t_stable)
    np.testing.assert_allclose(joined(blocks, "beam_monitor"), joined(blocks, "muons"))


def test_fast_scheme_flags_delay_and_rotator_truth() -> None:
    config = SourceConfig(pattern="octet", delay_patterns=3, polarization=0.8)
    blocks = run(config, 800)
    phase = joined(blocks, "pattern_phase")
    flags = joined(blocks, "flags")
    actual = joined(blocks, "actual_helicity")
    reported = joined(blocks, "reported_helicity")
    np.testing.assert_array_equal(phase, np.arange(800) % 8)
    np.testing.assert_array_equal(flags & FLAG_PATTERN_SYNC > 0, phase == 0)
    np.testing.assert_array_equal(flags & FLAG_PAIR_SYNC > 0, phase % 2 == 0)
    assert not (flags & FLAG_SETTLE).any()
    # reported(p) is what pattern p - delay actually had
    np.testing.assert_array_equal(reported[3 * 8 :], actual[: -3 * 8])
    np.testing.assert_array_equal(joined(blocks, "rotator_setpoint"), actual)
    np.testing.assert_array_equal(joined(blocks, "rotator_readback"), actual)
    np.testing.assert_allclose(joined(blocks, "polarization"), 0.8 * actual)


def slow_config(**kw) -> SourceConfig:
    base = {
        "scheme": "slow",
        "window_rate": 100.0,
        "flip_period": 2.0,
        "ramp_time": 0.3,
        "settle_time": 0.2,
        "polarization": 0.9,
    }
    return SourceConfig(**{**base, **kw})


def test_rotator_quartets_are_pseudo_random_and_cancel_a_linear_drift() -> None:
    """Quartets +--+ / -++- with a pseudo-random polarity: both polarities occur, each
    quartet is balanced and orthogonal to a linear ramp over its four intervals."""
    relative = RotatorSequence("quartet").relative(np.arange(4 * 256)).reshape(256, 4)
    polarity = relative[:, 0]
    np.testing.assert_array_equal(relative, polarity[:, None] * np.array([1, -1, -1, 1]))
    assert abs(int(polarity.sum())) < 3 * math.sqrt(256)  # neither polarity dominates
    assert (polarity[1:] != polarity[:-1]).any() and (polarity[1:] == polarity[:-1]).any()
    assert (relative @ np.arange(4) == 0).all() and (relative.sum(axis=1) == 0).all()
    pairs = RotatorSequence("pair").relative(np.arange(8))
    np.testing.assert_array_equal(pairs, [1, -1] * 4)


@pytest.mark.parametrize("rotator_pattern", ["quartet", "pair"])
def test_slow_rotator_intervals_ramp_and_settle_gate(rotator_pattern: str) -> None:
    blocks = run(slow_config(rotator_pattern=rotator_pattern), 2000)
    seq = joined(blocks, "seq")
    interval, phase = seq // 200, seq % 200  # 2 s x 100 Hz
    sequence = RotatorSequence(rotator_pattern)
    state = sequence.relative(interval)
    np.testing.assert_array_equal(joined(blocks, "pattern_number"), interval)
    np.testing.assert_array_equal(joined(blocks, "pattern_phase"), phase)
    np.testing.assert_array_equal(joined(blocks, "actual_helicity"), state)
    np.testing.assert_array_equal(joined(blocks, "reported_helicity"), state)
    flags = joined(blocks, "flags")
    np.testing.assert_array_equal(flags & FLAG_SETTLE > 0, phase < 50)  # ramp + settle = 0.5 s
    np.testing.assert_array_equal(flags & FLAG_PATTERN_SYNC > 0, phase == 0)
    first_of_pattern = interval % sequence.size == 0
    np.testing.assert_array_equal(flags & FLAG_PAIR_SYNC > 0, (phase == 0) & first_of_pattern)
    np.testing.assert_array_equal(joined(blocks, "rotator_setpoint"), state)
    np.testing.assert_array_equal(
        joined(blocks, "rotator_readback"), np.where(phase < 30, 0, state)
    )
    spin = joined(blocks, "polarization")
    # where the state changes the spin turns from the old state to the new one during the
    # ramp, then stays; where it does not, the spin stays throughout
    flips = (interval == 0) | (sequence.relative(np.maximum(interval - 1, 0)) != state)
    assert flips.all() if rotator_pattern == "pair" else not flips.all()
    steady = (phase >= 30) | ~flips
    np.testing.assert_allclose(spin[steady], 0.9 * state[steady])
    first = (phase == 0) & flips
    np.testing.assert_allclose(spin[first], -0.9 * state[first] * math.cos(math.pi * 0.5 / 30))
    assert (np.abs(spin[(phase < 30) & flips]) < 0.9).all()


def test_kick_turns_give_spin_angle() -> None:
    config = slow_config(scheme="kick", kick_turns=(0, 14), settle_time=0.1, kick_precession=12.0)
    blocks = run(config, 1600)
    seq = joined(blocks, "seq")
    interval, phase = seq // 200, seq % 200
    turns = np.where(RotatorSequence("quartet").relative(interval) > 0, 0, 14)
    np.testing.assert_array_equal(joined(blocks, "rotator_setpoint"), turns)
    np.testing.assert_array_equal(joined(blocks, "rotator_readback"), turns)
    np.testing.assert_allclose(
        joined(blocks, "polarization"), 0.9 * np.cos(np.radians(12.0 * turns))
    )
    np.testing.assert_array_equal(joined(blocks, "actual_helicity"), np.where(turns == 0, 1, -1))
    np.testing.assert_array_equal(joined(blocks, "flags") & FLAG_SETTLE > 0, phase < 10)


def test_fifteen_turns_reverse_the_spin() -> None:
    blocks = run(slow_config(scheme="kick", kick_turns=(0, 15), kick_precession=12.0), 800)
    spin = joined(blocks, "polarization")
    np.testing.assert_allclose(spin, 0.9 * joined(blocks, "actual_helicity"), atol=1e-12)


def test_precession_per_turn_follows_the_momentum() -> None:
    """a_mu gamma 360 deg per turn: ~12 deg at the magic momentum (the talk's 15 turns for
    180 deg), 0.44 deg at 29 MeV/c; the default kick turns are those nearest 180 deg."""
    assert precession_per_turn(MAGIC_MOMENTUM) == pytest.approx(12.3, abs=0.01)
    assert precession_per_turn(29.0) == pytest.approx(0.4353, abs=1e-4)
    assert slow_config(scheme="kick").kick.turns == (0, 414)
    magic = slow_config(scheme="kick", kick_precession=precession_per_turn(MAGIC_MOMENTUM))
    assert magic.kick.turns == (0, 15)
    blocks = run(slow_config(scheme="kick"), 800)
    spin, helicity = joined(blocks, "polarization"), joined(blocks, "actual_helicity")
    np.testing.assert_allclose(spin, 0.9 * helicity * np.where(helicity > 0, 1, 0.999995), 1e-6)


@pytest.mark.parametrize("scheme", ["fast", "slow", "kick"])
def test_truth_does_not_depend_on_block_size(scheme: str) -> None:
    config = slow_config(scheme=scheme, trip_rate=0.5, trip_duration=0.3)
    a, b = run(config, 1500, block=7), run(config, 1500, block=250)
    for name in ("seq", "pattern_number", "pattern_phase", "reported_helicity", "flags"):
        np.testing.assert_array_equal(joined(a, name), joined(b, name), err_msg=name)
    for name in ("actual_helicity", "rotator_readback", "polarization"):
        np.testing.assert_array_equal(joined(a, name), joined(b, name), err_msg=name)


def test_same_seed_same_data_other_seed_other_data() -> None:
    config = SourceConfig(seed=5)
    a, b = run(config, 500), run(config, 500)
    np.testing.assert_array_equal(joined(a, "counts"), joined(b, "counts"))
    c = run(replace(config, seed=6), 500)
    assert not np.array_equal(joined(a, "counts"), joined(c, "counts"))


def test_beam_trips_drop_the_rate_for_their_duration() -> None:
    config = SourceConfig(window_rate=240, trip_rate=0.2, trip_duration=2.0, **QUIET)
    blocks = run(config, 240 * 120, block=12)
    on = joined(blocks, "beam_on")
    muons = joined(blocks, "muons")
    nominal = config.muon_rate * config.t_stable
    np.testing.assert_allclose(muons[on], nominal)
    np.testing.assert_allclose(muons[~on], nominal * config.trip_residual)
    # counts during trips: Poisson around the residual rate, 3 sigma
    expected = muons[~on].sum() * 8 * 2.5e-4
    assert abs(joined(blocks, "detector_counts")[~on].sum() - expected) < 3 * math.sqrt(expected)
    assert expected < 1e-3 * muons[on].sum() * 8 * 2.5e-4
    # off periods last trip_duration (480 windows) unless the run ends inside one
    edges = np.flatnonzero(np.diff(np.concatenate([[1], on.astype(int), [1]])))
    lengths = edges[1::2] - edges[::2]
    assert lengths.size >= 3  # 120 s at 0.2 /s of beam: ~20 trips expected
    assert (lengths[:-1] == 480).all() and 0 < lengths[-1] <= 480


def test_slow_drift_and_charge_asymmetry() -> None:
    config = SourceConfig(drift_amplitude=0.05, drift_period=2.0, charge_asymmetry=2e-6, **QUIET)
    blocks = run(config, 960)
    seq, h = joined(blocks, "seq"), joined(blocks, "actual_helicity")
    expected = (
        config.muon_rate
        * config.t_stable
        * (1 + 0.05 * np.sin(2 * np.pi * seq / 480))
        * (1 + 2e-6 * h)
    )
    np.testing.assert_allclose(joined(blocks, "beam_monitor"), expected, rtol=1e-12)


def test_charge_asymmetry_recovered_from_the_beam_monitor() -> None:
    """ppm-level helicity-correlated intensity asymmetry, 1 % jitter, 3 sigma."""
    config = SourceConfig(charge_asymmetry=5e-5, intensity_jitter=0.01, bcm_resolution=1e-4)
    blocks = run(config, 400_000, block=20_000)
    q, h = joined(blocks, "beam_monitor"), joined(blocks, "actual_helicity")
    pairs = q.reshape(-1, 2)  # quartet windows 2k, 2k+1 have opposite helicity
    signs = h.reshape(-1, 2)[:, 0]
    a = signs * (pairs[:, 0] - pairs[:, 1]) / pairs.sum(axis=1)
    assert abs(a.mean() - 5e-5) < 3 * a.std() / math.sqrt(a.size)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"window_rate": 29.0}, "window_rate"),
        ({"window_rate": 20_001.0}, "window_rate"),
        ({"t_settle": 1 / 240}, "t_settle"),
        ({"muon_rate": 1e6}, "muon_rate"),
        ({"muon_rate": 2e11}, "muon_rate"),
        ({"momentum": 5.0}, "momentum"),
        ({"momentum": 600.0}, "momentum"),
        ({"polarization": 1.2}, "polarization"),
        ({"scheme": "medium"}, "scheme"),
        ({"preset": "bsm"}, "preset"),
        ({"mode": "afb", "z": 0}, "z"),
        ({"signal_fraction": 0.0}, "signal_fraction"),
        ({"trip_rate": -1.0}, "trip_rate"),
        ({"pattern": "hexo-quad"}, "pattern"),
        ({"scheme": "slow", "flip_period": 1.0, "ramp_time": 0.8, "settle_time": 0.3}, "gate"),
        ({"scheme": "slow", "flip_period": 0.004}, "flip_period"),
        ({"scheme": "slow", "window_rate": 20_000.0, "flip_period": 10.0}, "16-bit"),
        ({"scheme": "kick", "kick_turns": (0, 5)}, "kick_turns"),
        ({"scheme": "kick", "kick_turns": (15, 0)}, "kick_turns"),
    ],
)
def test_bad_configs_name_the_setting(change: dict, words: str) -> None:
    with pytest.raises(SourceConfigError, match=words):
        SourceConfig(**change)


def test_presets_and_momenta_accepted() -> None:
    """Momenta in [10, 500] MeV/c; the presets' values come from the physical models
    (tests/test_physics_models.py): SM A_LR at 90 deg off graphite ~1.4e-7 at 29 MeV/c, growing
    as p^2; A_FB[SM](Kr) ~ 0.5e-4 (within 20 %), ~ (36/Z)^3 for other targets."""
    for momentum in (10.0, 29.0, 40.0, 50.0, 100.0, 500.0):
        SourceConfig(momentum=momentum)
    sm = SourceConfig(preset="sm").injected_asymmetry
    assert sm == pytest.approx(1.45e-7, rel=0.02)
    assert SourceConfig(preset="sm", momentum=100.0).injected_asymmetry == pytest.approx(
        sm * (100 / 29) ** 2
    )
    assert 1e-4 <= SourceConfig(preset="np").injected_asymmetry <= 1e-3
    afb = SourceConfig(mode="afb", preset="sm").injected_asymmetry
    assert afb == pytest.approx(0.5e-4, rel=0.2)
    z30 = SourceConfig(mode="afb", preset="sm", z=30).injected_asymmetry
    assert z30 == pytest.approx(afb * (36 / 30) ** 3, rel=0.2)  # delta: Q_W / R_c^2 of Zn
    assert 0.005 <= SourceConfig(mode="afb", preset="np").injected_asymmetry <= 0.11
