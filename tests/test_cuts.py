"""The low-beam cut (pure core, no network): it removes exactly the patterns that saw a beam
trip, restores the statistical error the trips spoil, keeps every window in the
helicity-sorted counts, and does not depend on how the stream is cut into blocks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mupnc.monitor.analysis.cuts import LowBeamCut
from mupnc.monitor.analysis.results import INTEGRATING
from mupnc.monitor.analysis.run_analysis import RunAnalysis
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.monitor.decoding import DEFAULT_MINIRUN_ROTATOR_PATTERNS, minirun_length
from mupnc.sim.source import SourceConfig, WindowSource

WINDOW_RATE = 240.0
RATE = 1e8
INJECTED = 1e-3
SECONDS = 120
PATTERN = 4  # quartets


def simulated_run(trip_rate: float):
    """Two minutes of a PREX-like run (2 s beam trips at ``trip_rate`` /s) and its truth."""
    config = SourceConfig(
        asymmetry=INJECTED, muon_rate=RATE, trip_rate=trip_rate, trip_duration=2.0, seed=3
    )
    source = WindowSource(config, stream_id=1)
    simulated = [source.next_block_of(12) for _ in range(int(SECONDS * WINDOW_RATE) // 12)]
    settings = RunSettings(
        run=1,
        pattern=config.pattern,
        delay_patterns=config.delay_patterns,
        polarization=config.polarization,
        channel_map=config.resolved_channel_map(),
    )
    beam_on = np.concatenate([s.beam_on for s in simulated])
    return settings, [s.block for s in simulated], beam_on


@pytest.fixture(scope="module")
def tripped():
    return simulated_run(0.05)


def analysed(settings, blocks, cut=None, whole=True) -> RunAnalysis:
    """The JAPAN low-beam cut acts on the integrating estimator (per-pattern yields)."""
    analysis = RunAnalysis(settings, None, cut, INTEGRATING)
    if whole:
        analysis.feed_blocks(blocks)
    else:
        for block in blocks:
            analysis.feed(block)
    analysis.finish()
    return analysis


def test_the_cut_removes_exactly_the_patterns_with_a_tripped_window(tripped):
    settings, blocks, beam_on = tripped
    assert 0.05 < 1 - beam_on.mean() < 0.25  # the run really has trips
    tripped_patterns = np.unique(np.flatnonzero(~beam_on) // PATTERN).size
    cut = LowBeamCut(0.5 * RATE, WINDOW_RATE)
    with_cut, without = analysed(settings, blocks, cut), analysed(settings, blocks)
    assert cut.patterns_cut == tripped_patterns
    assert with_cut.acc.good_patterns == without.acc.good_patterns - tripped_patterns
    # nothing lost: every window is still in the helicity-sorted counts
    np.testing.assert_array_equal(with_cut.acc.sorted_counts(), without.acc.sorted_counts())


def test_the_cut_restores_the_statistical_error_and_finds_the_injected_asymmetry(tripped):
    settings, blocks, _ = tripped
    with_cut = analysed(settings, blocks, LowBeamCut(0.5 * RATE, WINDOW_RATE)).result()
    without = analysed(settings, blocks).result()
    a = with_cut.combined
    assert abs(a.value - INJECTED) < 3 * a.error
    # trip patterns (1e-4 of the beam) carry ~100x the per-pattern error and spoil the
    # spread; with the cut the error is that of a trip-free run with as many patterns
    # (the error estimate itself fluctuates by 1/sqrt(2 N) ~ 1 %)
    assert without.combined.error > 1.5 * a.error
    clean_settings, clean_blocks, _ = simulated_run(0.0)
    clean = analysed(clean_settings, clean_blocks).result().combined
    assert a.error == pytest.approx(clean.error * np.sqrt(clean.n / a.n), rel=0.1)


def test_the_cut_does_not_depend_on_the_blocks(tripped):
    settings, blocks, _ = tripped
    whole = analysed(settings, blocks, LowBeamCut(0.5 * RATE, WINDOW_RATE))
    one_by_one = analysed(settings, blocks, LowBeamCut(0.5 * RATE, WINDOW_RATE), whole=False)
    assert whole.low_beam.patterns_cut == one_by_one.low_beam.patterns_cut > 0
    assert json.dumps(whole.acc.state()) == json.dumps(one_by_one.acc.state())


def test_a_cut_below_the_trip_residual_cuts_nothing(tripped):
    settings, blocks, _ = tripped
    cut = LowBeamCut(1e-6 * RATE, WINDOW_RATE)
    with_cut, without = analysed(settings, blocks, cut), analysed(settings, blocks)
    assert cut.patterns_cut == 0
    assert json.dumps(with_cut.acc.state()) == json.dumps(without.acc.state())


@pytest.mark.parametrize("rate, window_rate", [(0, 240), (-1, 240), (np.nan, 240), (1e8, 0)])
def test_a_meaningless_cut_is_refused(rate, window_rate):
    with pytest.raises(ValueError, match="> 0"):
        LowBeamCut(rate, window_rate)


def test_minirun_length_applies_to_every_scheme():
    assert minirun_length("fast") == 9000
    assert minirun_length("slow") == minirun_length("kick") == DEFAULT_MINIRUN_ROTATOR_PATTERNS
    assert minirun_length("slow", 4) == minirun_length("fast", 4) == 4
