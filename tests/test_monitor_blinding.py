"""Blinding: offsets from seeds within the box, checksums, and blinded run results."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.blinding import (
    DEFAULT_BOX,
    UNBLINDED,
    Blinder,
    ioc_blinder,
    run_blinder,
)
from mupnc.monitor.analysis.results import COMBINED, run_result
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.sim.source import SourceConfig, WindowSource

N_SEEDS = 4000


def test_offsets_fill_the_box_like_japan() -> None:
    """offset = box * x|x| with x uniform in [-1, 1): checks of its distribution.

    For N seeds, x|x| has mean 0 and variance E[x^4] = 1/5, so the sample mean lies
    within 3 sqrt(0.2 / N) of 0; P(|offset| < box / 4) = P(|x| < 1/2) = 1/2, so that
    fraction lies within 3 sqrt(0.25 / N) of 1/2 (3-sigma bands, fixed seeds).
    """
    box = 2e-3
    offsets = np.array([Blinder.from_seed(f"seed-{i}", box).offset for i in range(N_SEEDS)])
    assert (np.abs(offsets) < box).all()
    assert abs(offsets.mean() / box) < 3 * math.sqrt(0.2 / N_SEEDS)
    inner = np.mean(np.abs(offsets) < box / 4)
    assert abs(inner - 0.5) < 3 * math.sqrt(0.25 / N_SEEDS)
    assert np.unique(offsets).size == N_SEEDS


def test_blinder_is_deterministic_and_hides_its_offset() -> None:
    a, b = Blinder.from_seed("PREX-II", 1e-3), Blinder.from_seed("PREX-II", 1e-3)
    assert a == b and a.blinded
    assert Blinder.from_seed("PREX-III", 1e-3).checksum != a.checksum
    assert Blinder.from_seed("PREX-II", 2e-3).checksum != a.checksum  # the box is part of it
    assert Blinder.from_seed("PREX-II", 2e-3).offset == pytest.approx(2 * a.offset, rel=1e-15)
    assert repr(a.offset) not in repr(a) and "offset" not in repr(a)
    assert len(a.checksum) == 16 and int(a.checksum, 16) >= 0
    for value in (0.0, 1e-4, -0.05):
        assert a.unblind(a.blind(value)) == pytest.approx(value, abs=1e-18)
        assert a.unblind(a.blind(value, -1.0), -1.0) == pytest.approx(value, abs=1e-18)
    assert UNBLINDED.blind(0.123) == 0.123 and not UNBLINDED.blinded


def test_bad_blinding_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Blinder.from_seed("", 1e-3)
    for box in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive fraction"):
            Blinder.from_seed("s", box)


def test_box_and_run_blinder_defaults() -> None:
    assert run_blinder(False, "seed", 1e-3) is UNBLINDED
    assert run_blinder(True, "seed", 0.0) == Blinder.from_seed("seed", DEFAULT_BOX)
    assert run_blinder(True, "seed", 5e-3) == Blinder.from_seed("seed", 5e-3)
    # no seed: a random one, blinded all the same, different each time
    first, second = run_blinder(True, None), run_blinder(True, None)
    assert first.blinded and second.blinded and first.checksum != second.checksum


def _accumulated(config: SourceConfig, n_windows: int, minirun_patterns: int) -> RunAccumulator:
    source = WindowSource(config)
    decoder = HelicityDecoder(config.pattern, config.delay_patterns, source.n_channels)
    acc = RunAccumulator(source.channel_map, source.shape.size, minirun_patterns)
    for _ in range(n_windows // 500):
        acc.add(decoder.feed(source.next_block_of(500).block))
    acc.add(decoder.flush())
    return acc


@pytest.mark.parametrize("mode", ["alr", "afb"])
def test_blinded_result_shifts_every_physics_asymmetry_only(mode: str) -> None:
    channels = (
        (Channel("scat_a", "scatter", 2e-4, 0.5), Channel("scat_b", "scatter", 3e-4, -0.5))
        if mode == "alr"
        else (Channel("fwd", "forward", 1.1e-3), Channel("bwd", "backward", 1e-3))
    )
    cmap = ChannelMap(mode=mode, channels=(*channels, Channel("lumi", "monitor", 5e-4)))
    config = SourceConfig(mode=mode, channel_map=cmap, muon_rate=2e7, seed=5, asymmetry=1e-2)
    acc = _accumulated(config, 6000, minirun_patterns=300)
    blinder = Blinder.from_seed("shift crew", 5e-3)
    plain, blind = run_result(acc, 0.9), run_result(acc, 0.9, blinder)

    assert not plain.blinded and plain.blinding_checksum == ""
    assert blind.blinded and blind.blinding_checksum == blinder.checksum
    assert abs(blinder.offset) > 1e-4  # this seed's offset is far from zero
    sign = {"scatter": 1.0, "backward": 1.0, "forward": -1.0, "monitor": 0.0}
    for result_plain, result_blind in [
        (plain, blind),
        *zip(plain.miniruns, blind.miniruns, strict=True),
    ]:
        assert result_blind.blinded
        c_plain, c_blind = result_plain.combined, result_blind.combined
        assert c_blind.value == pytest.approx(c_plain.value + blinder.offset, abs=1e-15)
        assert (c_blind.error, c_blind.n) == (c_plain.error, c_plain.n)
        for channel in cmap.channels:
            p, b = result_plain.channels[channel.name], result_blind.channels[channel.name]
            expected = p.value + sign[channel.role] * blinder.offset
            assert b.value == pytest.approx(expected, abs=1e-15)
            assert b.error == p.error
        # never blinded: charge and null asymmetries
        assert result_blind.charge_asymmetry == result_plain.charge_asymmetry
        assert result_blind.null == result_plain.null
    # a common offset leaves the minirun pulls and chi2/ndf alone
    assert len(plain.miniruns) == 5
    for key in (COMBINED, *cmap.names):
        np.testing.assert_allclose(blind.pulls[key], plain.pulls[key], rtol=1e-9, atol=1e-12)
        assert blind.channel_chi2_ndf[key] == pytest.approx(plain.channel_chi2_ndf[key], rel=1e-9)
    assert blind.chi2_ndf == pytest.approx(plain.chi2_ndf, rel=1e-9)
    # unblinding with the seed gives the truth back
    assert blinder.unblind(blind.combined.value) == pytest.approx(plain.combined.value, abs=1e-15)
    assert replace(blind.combined, value=plain.combined.value) == plain.combined


def test_a_run_whose_blinding_cannot_be_read_is_analysed_blinded() -> None:
    """RUN:BLIND unreadable (a DAQ that does not serve it, or gone at start): blinded with
    the default box, never unblinded; readable values are honoured."""
    unknown = ioc_blinder(None, None)
    assert unknown.blinded and unknown.box == DEFAULT_BOX and unknown.offset != 0
    assert ioc_blinder(False, "seed") is UNBLINDED
    assert ioc_blinder(True, "seed", 1e-3).box == 1e-3
