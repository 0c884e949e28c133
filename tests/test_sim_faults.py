"""Fault injection: each kind visible in the truth mask and in the published data as it should.

Every test compares a faulted source with a clean twin (same seed): fault choices come
from a hash, not from the physics random stream, so the twin's windows are the same
windows without the fault.
"""

from __future__ import annotations

import numpy as np
import pytest

from mupnc.daq.blocks import FLAG_PATTERN_SYNC, FLAG_SETTLE
from mupnc.sim.faults import FAULT_KINDS, FaultSwitchboard, fault_bit
from mupnc.sim.source import SimulatedBlock, SourceConfig, WindowSource

QUIET = {"intensity_jitter": 0.0, "bcm_resolution": 0.0}
SLOW = {"window_rate": 100.0, "flip_period": 1.0, "ramp_time": 0.2, "settle_time": 0.1}


def twins(config: SourceConfig, kind: str, n: int = 800, **params) -> tuple[SimulatedBlock, ...]:
    """(clean, faulted) blocks of ``n`` windows after 100 clean windows."""
    clean, faulted = WindowSource(config), WindowSource(config)
    clean.next_block_of(100)
    faulted.next_block_of(100)
    faulted.set_fault(kind, True, **params)
    return clean.next_block_of(n), faulted.next_block_of(n)


def bit_set(sim: SimulatedBlock, kind: str) -> np.ndarray:
    return (sim.fault & fault_bit(kind)) > 0


def only_bits(sim: SimulatedBlock, kind: str) -> None:
    assert not (sim.fault & ~np.uint16(fault_bit(kind))).any()


def test_kinds_are_the_cli_contract() -> None:
    assert FAULT_KINDS == (
        "helicity_flip",
        "stuck_helicity",
        "missed_windows",
        "phase_error",
        "rotator_mismatch",
        "settle_violation",
        "charge_asymmetry",
        "frequency_drift",
    )
    assert [fault_bit(k) for k in FAULT_KINDS] == [1 << i for i in range(8)]


def test_switchboard_errors_and_state() -> None:
    board = FaultSwitchboard()
    with pytest.raises(ValueError, match=r"unknown fault kind 'bitflip'.*helicity_flip"):
        board.set("bitflip", True)
    with pytest.raises(ValueError, match=r"unknown parameter.*accepted: value"):
        board.set("charge_asymmetry", True, probability=0.1)
    with pytest.raises(ValueError, match="probability"):
        board.set("helicity_flip", True, probability=1.5)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        board.set("stuck_helicity", True, value=0)
    assert board.active == {}
    board.set("missed_windows", True, probability=0.2)
    board.set("helicity_flip", True)
    assert board.active == {
        "helicity_flip": {"probability": 0.05},
        "missed_windows": {"probability": 0.2},
    }
    board.set("missed_windows", False)
    assert list(board.active) == ["helicity_flip"]


def test_switchable_while_running() -> None:
    source = WindowSource(SourceConfig())
    assert not source.next_block_of(100).fault.any()
    source.set_fault("charge_asymmetry", True, value=0.01)
    assert source.active_faults == {"charge_asymmetry": {"value": 0.01}}
    assert (source.next_block_of(100).fault == fault_bit("charge_asymmetry")).all()
    source.set_fault("charge_asymmetry", False)
    assert source.active_faults == {}
    assert not source.next_block_of(100).fault.any()


def test_helicity_flip_inverts_whole_reported_patterns() -> None:
    clean, bad = twins(SourceConfig(), "helicity_flip", probability=0.2)
    hit = bit_set(bad, "helicity_flip")
    only_bits(bad, "helicity_flip")
    assert 0.1 < hit.mean() < 0.3
    patterns = bad.block.pattern_number
    assert all(hit[patterns == p].all() for p in np.unique(patterns[hit]))  # whole patterns
    expected = np.where(hit, -clean.block.reported_helicity, clean.block.reported_helicity)
    np.testing.assert_array_equal(bad.block.reported_helicity, expected)
    np.testing.assert_array_equal(bad.actual_helicity, clean.actual_helicity)
    np.testing.assert_array_equal(bad.block.counts, clean.block.counts)


@pytest.mark.parametrize("scheme", ["fast", "slow"])
def test_stuck_helicity(scheme: str) -> None:
    clean, bad = twins(SourceConfig(scheme=scheme, **SLOW), "stuck_helicity", value=-1)
    assert (bad.block.reported_helicity == -1).all()
    assert bit_set(bad, "stuck_helicity").all()
    np.testing.assert_array_equal(bad.actual_helicity, clean.actual_helicity)


def test_missed_windows_leave_sequence_gaps_and_are_not_published() -> None:
    clean, bad = twins(SourceConfig(), "missed_windows", probability=0.05)
    kept = np.isin(clean.block.seq, bad.block.seq)
    assert 0.9 < kept.mean() < 0.99
    gaps = np.diff(bad.block.seq, prepend=99) > 1
    np.testing.assert_array_equal(bit_set(bad, "missed_windows"), gaps)
    only_bits(bad, "missed_windows")
    # the published windows are exactly the clean twin's windows, minus the missed ones
    np.testing.assert_array_equal(bad.block.counts, clean.block.counts[kept])
    np.testing.assert_array_equal(bad.actual_helicity, clean.actual_helicity[kept])
    assert bad.actual_helicity.size == bad.block.n_windows == bad.fault.size
    assert bad.block.seq[-1] == clean.block.seq[-1]  # the MPS counter kept counting


def test_phase_error_moves_the_phase_off_the_sync_bit() -> None:
    clean, bad = twins(SourceConfig(pattern="octet"), "phase_error", probability=0.1)
    hit = bit_set(bad, "phase_error")
    only_bits(bad, "phase_error")
    assert hit.any()
    changed = bad.block.pattern_phase != clean.block.pattern_phase
    np.testing.assert_array_equal(changed, hit)
    np.testing.assert_array_equal(
        bad.block.pattern_phase[hit], (clean.block.pattern_phase[hit] + 1) % 8
    )
    sync = (bad.block.flags & FLAG_PATTERN_SYNC) > 0
    assert (bad.block.pattern_phase[sync & hit] == 1).all()
    assert (bad.block.pattern_phase[sync & ~hit] == 0).all()


@pytest.mark.parametrize("scheme", ["fast", "slow", "kick"])
def test_rotator_mismatch_readback_differs_and_spin_follows_it(scheme: str) -> None:
    kick = {"kick_turns": (0, 15), "kick_precession": 12.0} if scheme == "kick" else {}
    config = SourceConfig(scheme=scheme, polarization=0.8, **SLOW, **kick)
    clean, bad = twins(config, "rotator_mismatch")
    assert bit_set(bad, "rotator_mismatch").all()
    np.testing.assert_array_equal(bad.rotator_setpoint, clean.rotator_setpoint)
    assert (bad.rotator_readback != bad.rotator_setpoint).all()
    np.testing.assert_array_equal(bad.block.reported_helicity, clean.block.reported_helicity)
    np.testing.assert_allclose(bad.polarization, -0.8 * bad.actual_helicity, atol=1e-12)
    if scheme == "kick":
        np.testing.assert_array_equal(bad.rotator_readback, 15 - bad.rotator_setpoint)


@pytest.mark.parametrize("scheme", ["slow", "kick"])
def test_settle_violation_drops_the_settle_flag(scheme: str) -> None:
    clean, bad = twins(SourceConfig(scheme=scheme, **SLOW), "settle_violation")
    gated = (clean.block.flags & FLAG_SETTLE) > 0
    assert gated.any()
    np.testing.assert_array_equal(bit_set(bad, "settle_violation"), gated)
    assert not (bad.block.flags & FLAG_SETTLE).any()
    np.testing.assert_array_equal(bad.polarization, clean.polarization)


def test_settle_violation_fast_integrates_the_switch() -> None:
    config = SourceConfig(t_settle=100e-6, polarization=0.9, **QUIET)
    clean, bad = twins(config, "settle_violation")
    before = WindowSource(config).next_block_of(100).actual_helicity[-1]
    switched = np.diff(bad.actual_helicity, prepend=before) != 0
    np.testing.assert_array_equal(bit_set(bad, "settle_violation"), switched)
    gate = config.t_stable
    np.testing.assert_allclose(bad.muons, clean.muons * (gate + 100e-6) / gate)
    expected = np.where(switched, 0.9 * gate / (gate + 100e-6), 0.9) * bad.actual_helicity
    np.testing.assert_allclose(bad.polarization, expected)


def test_charge_asymmetry_excursion() -> None:
    clean, bad = twins(SourceConfig(**QUIET), "charge_asymmetry", value=2e-3)
    assert bit_set(bad, "charge_asymmetry").all()
    ratio = bad.block.beam_monitor / clean.block.beam_monitor
    np.testing.assert_allclose(ratio, 1 + 2e-3 * bad.actual_helicity)


def test_frequency_drift_fast_shortens_windows() -> None:
    config = SourceConfig(**QUIET)
    clean, bad = twins(config, "frequency_drift", fraction=0.05)
    assert bit_set(bad, "frequency_drift").all()
    gate = 1 / (config.window_rate * 1.05) - config.t_settle
    np.testing.assert_allclose(bad.muons, config.muon_rate * gate)
    assert (bad.muons < clean.muons).all()


def test_frequency_drift_slow_shortens_reversals_from_the_next_one() -> None:
    config = SourceConfig(scheme="slow", **SLOW)  # 100 windows per reversal
    source = WindowSource(config)
    source.next_block_of(150)  # in the middle of reversal 1
    source.set_fault("frequency_drift", True, fraction=0.25)
    sim = source.next_block_of(400)
    numbers = sim.block.pattern_number
    lengths = np.bincount(numbers)[1:]
    assert lengths[0] == 50  # the rest of reversal 1 keeps its length
    assert (lengths[1:-1] == 80).all()  # later ones are 1.0 s / 1.25 long
    assert bit_set(sim, "frequency_drift").all()


def test_frequency_drift_that_leaves_no_gate_is_refused() -> None:
    source = WindowSource(SourceConfig(window_rate=20_000, t_settle=40e-6))
    with pytest.raises(ValueError, match="T_stable"):
        source.set_fault("frequency_drift", True, fraction=0.5)


def test_fault_choices_do_not_depend_on_block_size() -> None:
    def faults(block: int) -> np.ndarray:
        source = WindowSource(SourceConfig())
        source.set_fault("helicity_flip", True)
        source.set_fault("phase_error", True)
        out = []
        while source.next_seq < 4000:
            out.append(source.next_block_of(block).fault)
        return np.concatenate(out)

    masks = faults(16)
    assert (masks & fault_bit("helicity_flip")).any() and (masks & fault_bit("phase_error")).any()
    np.testing.assert_array_equal(masks, faults(400))
