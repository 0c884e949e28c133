"""Injected asymmetries come back from the simulator's counts and truth helicity.

A simple estimator, not the monitor: helicity-sorted sums per channel.  Over many seeds
the pulls (estimate - truth) / error must have mean 0 and width 1 within their own
statistical tolerance (3 sigma), for A_LR and A_FB from 1e-4 to 0.1, with presets,
nuisances and dilution.  The physical presets' models themselves: tests/test_physics_models.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.daq.scheme import RotatorSequence
from mupnc.monitor.analysis.asymmetry import yield_asymmetry
from mupnc.sim.detector import Kinematics, alr_shape, scatter_weights
from mupnc.sim.source import SourceConfig, WindowSource

SEEDS = 200
WINDOWS = 2000  # 500 quartets
POLARIZATION = 0.85


def sorted_sums(config: SourceConfig) -> tuple[np.ndarray, np.ndarray, WindowSource]:
    """Counts per channel summed over windows of actual helicity +1 and -1."""
    source = WindowSource(config)
    sim = source.next_block_of(WINDOWS)
    counts, h = sim.detector_counts, sim.actual_helicity
    return counts[h > 0].sum(axis=0), counts[h < 0].sum(axis=0), source


def check_pulls(pulls: np.ndarray) -> None:
    n = pulls.size
    assert abs(pulls.mean()) < 3 / math.sqrt(n), pulls.mean()
    assert abs(pulls.std(ddof=1) - 1) < 3 / math.sqrt(2 * (n - 1)), pulls.std(ddof=1)


def quiet(**kw) -> SourceConfig:
    """Rate high enough for ~1e5 counts per window and channel; no intensity noise."""
    base = {
        "muon_rate": 1e11,
        "polarization": POLARIZATION,
        "intensity_jitter": 0.0,
        "pattern": "quartet",
    }
    return SourceConfig(**{**base, **kw})


@pytest.mark.parametrize("asymmetry", [1e-4, 1e-3, 1e-2, 0.1])
def test_alr_recovered_per_channel(asymmetry: float) -> None:
    pulls, estimates, errors = [], [], []
    for seed in range(SEEDS):
        plus, minus, source = sorted_sums(quiet(asymmetry=asymmetry, seed=seed))
        total = plus + minus
        a = (plus - minus) / total / POLARIZATION
        err = np.sqrt((1 - (POLARIZATION * a) ** 2) / total) / POLARIZATION
        truth = source.channel_asymmetry
        np.testing.assert_allclose(truth, asymmetry)
        pulls.append((a - truth) / err)
        estimates.append(a.mean())
        errors.append(err.mean() / math.sqrt(a.size))
    check_pulls(np.concatenate(pulls))
    combined = np.mean(estimates)
    error = math.sqrt(np.sum(np.square(errors))) / len(errors)
    assert abs(combined - asymmetry) < 3 * error
    assert error < asymmetry / 5  # the injected value is really seen, not just consistent


@pytest.mark.parametrize(("preset", "momentum"), [("sm", 29.0), ("np", 29.0), ("np", 100.0)])
def test_alr_presets_follow_cos_theta(preset: str, momentum: float) -> None:
    """Physical presets: each channel sees A0 x shape(cos theta, p), and its counts go as
    acceptance x Mott weight (expected counts known to the Poisson error of ~1e8 counts)."""
    pulls = []
    for seed in range(SEEDS // 2):
        plus, minus, source = sorted_sums(quiet(preset=preset, momentum=momentum, seed=100 + seed))
        total = plus + minus
        a = (plus - minus) / total / POLARIZATION
        err = np.sqrt(1 / total) / POLARIZATION
        cos = np.array([c.cos_theta for c in source.detectors.channels])
        truth = source.config.injected_asymmetry * alr_shape(
            cos, preset, Kinematics(momentum=momentum)
        )
        np.testing.assert_allclose(source.channel_asymmetry, truth)
        pulls.append((a - truth) / err)
    check_pulls(np.concatenate(pulls))
    cmap = source.detectors
    weights = scatter_weights(cmap, preset, kinematics=Kinematics(momentum=momentum))
    rate = source.config.muon_rate * source.config.t_stable * WINDOWS
    expected = rate * np.array([c.acceptance for c in cmap.channels]) * weights
    # Poisson: 5 sigma of the smallest channel's relative error bounds all eight channels
    np.testing.assert_allclose(total, expected, rtol=5 / np.sqrt(expected.min()))


def afb_map(forward_acceptance: float, backward_acceptance: float) -> ChannelMap:
    """Forward/backward gamma detectors listed backward first, plus a monitor counter."""
    return ChannelMap(
        mode="afb",
        channels=(
            Channel("lumi", "monitor", 1e-3),
            Channel("g_b", "backward", backward_acceptance),
            Channel("g_f", "forward", forward_acceptance),
        ),
    )


@pytest.mark.parametrize("asymmetry", [1e-4, 1e-3, 1e-2, 0.1])
def test_afb_cross_ratio_gives_the_diluted_asymmetry(asymmetry: float) -> None:
    """Acceptance and efficiency mismatch and a charge asymmetry cancel; dilution stays."""
    dilution = 0.4
    cmap = afb_map(1.2e-3, 0.8e-3)
    pulls = []
    for seed in range(SEEDS):
        config = quiet(
            mode="afb",
            asymmetry=asymmetry,
            channel_map=cmap,
            signal_fraction=dilution,
            efficiency_mismatch=0.1,
            charge_asymmetry=1e-3,
            seed=seed,
        )
        plus, minus, source = sorted_sums(config)
        roles = {c.role: i for i, c in enumerate(source.detectors.channels)}
        f, b = roles["forward"], roles["backward"]
        r = math.sqrt(plus[b] * minus[f] / (minus[b] * plus[f]))
        measured = (r - 1) / (r + 1)
        err = (
            (1 - measured**2)
            / 4
            * math.sqrt(sum(1 / x for x in (plus[f], plus[b], minus[f], minus[b])))
        )
        pulls.append((measured / POLARIZATION - asymmetry * dilution) / (err / POLARIZATION))
        # the monitor counter carries no asymmetry beyond the charge asymmetry
        assert source.channel_asymmetry[roles["monitor"]] == 0
    check_pulls(np.array(pulls))


def test_slow_rotator_settled_windows_carry_the_full_asymmetry() -> None:
    """Outside the settle gate the slow scheme measures P*A; the ramp windows dilute it."""
    config = quiet(
        scheme="slow", window_rate=240, flip_period=1.0, ramp_time=0.2, settle_time=0.1,
        asymmetry=0.02,
    )  # fmt: skip
    source = WindowSource(config)
    sim = source.next_block_of(240 * 40)
    settled = (sim.block.flags & 4) == 0
    h, counts = sim.actual_helicity, sim.detector_counts.sum(axis=1)
    plus, minus = counts[settled & (h > 0)].sum(), counts[settled & (h < 0)].sum()
    a = (plus - minus) / (plus + minus) / POLARIZATION
    assert abs(a - 0.02) < 3 / math.sqrt(plus + minus) / POLARIZATION
    interval = sim.block.pattern_number.astype(np.int64)
    sequence = RotatorSequence(config.rotator_pattern)
    previous = sequence.relative(np.maximum(interval - 1, 0))
    flips = (interval == 0) | (sequence.relative(interval) != previous)  # 0: from the unknown
    ramp = ~settled & (sim.rotator_readback == 0)
    for where, expected in ((flips, 0.0), (~flips, 0.02)):
        # the spin averages to zero over a symmetric ramp; where the state stays, it stays
        plus, minus = counts[ramp & where & (h > 0)], counts[ramp & where & (h < 0)]
        asymmetry = yield_asymmetry(plus.mean(), minus.mean()) / POLARIZATION
        error = 1 / math.sqrt(plus.sum() + minus.sum()) / POLARIZATION
        assert abs(asymmetry - expected) < 3 * error
