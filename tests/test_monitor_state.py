"""RunAccumulator.state / from_state: a restarted monitor continues bit-exactly."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest

from mupnc.daq.channel_map import default_channel_map
from mupnc.monitor.analysis.accumulator import MinirunSums, RunAccumulator
from mupnc.monitor.analysis.results import run_result
from mupnc.monitor.analysis.statistics import RunningStats
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.sim.source import SourceConfig, WindowSource


def decoded_blocks(config: SourceConfig, n_blocks: int, block: int):
    source = WindowSource(config)
    decoder = HelicityDecoder(config.pattern, config.delay_patterns, source.n_channels)
    out = [decoder.feed(source.next_block_of(block).block) for _ in range(n_blocks)]
    return [*out, decoder.flush()], source


def assert_identical(a: RunAccumulator, b: RunAccumulator) -> None:
    assert len(a.miniruns) == len(b.miniruns)
    for ma, mb in zip(a.miniruns, b.miniruns, strict=True):
        for f in fields(MinirunSums):
            va, vb = getattr(ma, f.name), getattr(mb, f.name)
            if isinstance(va, RunningStats):
                for moment in ("n", "mean", "m2"):  # bit-exact, not merely close
                    np.testing.assert_array_equal(getattr(va, moment), getattr(vb, moment))
            elif isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype
                np.testing.assert_array_equal(va, vb)
            else:
                assert va == vb, f.name


@pytest.mark.parametrize(("mode", "split"), [("alr", 7), ("afb", 13), ("alr", 1)])
def test_resume_from_state_equals_uninterrupted_run(mode: str, split: int) -> None:
    """Accumulate part of a run, save, restore (through JSON), accumulate the rest."""
    config = SourceConfig(mode=mode, muon_rate=2e7, seed=21, charge_asymmetry=1e-3)
    blocks, source = decoded_blocks(config, 20, 333)
    size = source.shape.size

    whole = RunAccumulator(source.channel_map, size, minirun_patterns=150)
    for d in blocks:
        whole.add(d)

    first = RunAccumulator(source.channel_map, size, minirun_patterns=150)
    for d in blocks[:split]:
        first.add(d)
    saved = json.loads(json.dumps(first.state()))  # what a database column would hold
    resumed = RunAccumulator.from_state(source.channel_map, saved)
    assert resumed.dirty == {len(resumed.miniruns) - 1}  # the others' rows are written
    for d in blocks[split:]:
        resumed.add(d)

    assert len(whole.miniruns) > 3  # the split is followed by minirun boundaries
    assert_identical(whole, resumed)
    # repr: exact for floats, and NaN (the short last minirun's pull) equals NaN
    assert repr(run_result(whole, 0.9)) == repr(run_result(resumed, 0.9))


def test_state_of_a_fresh_accumulator_round_trips() -> None:
    cmap = default_channel_map("alr")
    fresh = RunAccumulator(cmap, 4, 200)
    assert_identical(fresh, RunAccumulator.from_state(cmap, fresh.state()))


def test_state_rejects_mismatched_input() -> None:
    alr, afb = default_channel_map("alr"), default_channel_map("afb")
    state = RunAccumulator(alr, 4, 200).state()
    with pytest.raises(ValueError, match="different channel map"):
        RunAccumulator.from_state(afb, state)
    with pytest.raises(ValueError, match="version"):
        RunAccumulator.from_state(alr, {**state, "version": 99})
    truncated = json.loads(json.dumps(state))
    truncated["miniruns"][0]["counts"] = [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="counts has shape"):
        RunAccumulator.from_state(alr, truncated)
