"""The analysis is a pure function of the window stream: however the windows are cut into
blocks (one window per block, prime sizes, the whole run at once, random splits), the
decoders release the same windows with the same helicities and count the same errors,
and the accumulator's state and the run result are the same to the last bit; so are they
after a checkpoint (state through JSON, from_state) at a random point.  No network."""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, fields

import numpy as np
import pytest

from mupnc.daq.blocks import WindowBlock
from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.monitor.analysis import accumulator
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.results import run_result
from mupnc.monitor.analysis.statistics import GROUP_SAMPLES, MeasurementTable, SequentialMoments
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder
from mupnc.monitor.decoding.stream import DecodedWindows
from mupnc.sim.source import SourceConfig, WindowSource

SLOW = dict(flip_period=0.025, ramp_time=0.004, settle_time=0.004)  # 6-window intervals
FAULTS = (  # (kind, params), each switched on for a while, one after the other
    ("helicity_flip", {"probability": 0.1}),
    ("stuck_helicity", {"value": 1.0}),
    ("missed_windows", {"probability": 0.02}),
    ("phase_error", {"probability": 0.1}),
    ("rotator_mismatch", {}),
    ("settle_violation", {}),
    ("charge_asymmetry", {"value": 0.01}),
    ("frequency_drift", {"fraction": 0.05}),
)
SIM_BLOCK = 12
CLEAN_BLOCKS = 40  # between two faults
FAULT_BLOCKS = 15


def channel_map(mode: str) -> ChannelMap:
    if mode == "afb":
        roles = ("forward", "forward", "backward", "backward", "monitor")
    else:
        roles = ("scatter", "scatter", "scatter")
    cos = np.linspace(-0.9, 0.9, len(roles))
    channels = tuple(
        Channel(f"ch{i}", role, 1e-4, float(c))
        for i, (role, c) in enumerate(zip(roles, cos, strict=True))
    )
    return ChannelMap(mode=mode, channels=channels)


@dataclass(frozen=True)
class Case:
    scheme: str
    pattern: str
    mode: str
    minirun: int
    stuck_start: bool = False  # stuck helicity from the start: decoders give windows up
    renumbered: bool = False  # some windows carry a wrong (earlier) pattern number


CASES = {
    "fast-quartet-alr": Case("fast", "quartet", "alr", 150),
    "fast-octet-afb": Case("fast", "octet", "afb", 100),
    "slow-alr": Case("slow", "quartet", "alr", 70),
    "kick-afb": Case("kick", "quartet", "afb", 70),
    "fast-no-lock": Case("fast", "quartet", "alr", 150, stuck_start=True),
    "slow-no-lock": Case("slow", "quartet", "alr", 70, stuck_start=True),
    "fast-renumbered": Case("fast", "quartet", "alr", 150, renumbered=True),
    "kick-renumbered": Case("kick", "quartet", "afb", 70, renumbered=True),
}
MAX_PENDING = 500  # windows the decoders hold without a lock before giving them up


def simulated_stream(case: Case) -> tuple[WindowSource, WindowBlock]:
    """A faulty run as one block of windows (simulated once; cut up by the tests)."""
    config = SourceConfig(
        scheme=case.scheme,
        pattern=case.pattern,
        channel_map=channel_map(case.mode),
        muon_rate=2e8,
        seed=17,
        **(SLOW if case.scheme != "fast" else {}),
    )
    source = WindowSource(config)
    blocks = []
    if case.stuck_start:
        source.set_fault("stuck_helicity", True, value=1.0)
        blocks += [source.next_block_of(SIM_BLOCK).block for _ in range(80)]
        source.set_fault("stuck_helicity", False)
    for kind, params in FAULTS:
        blocks += [source.next_block_of(SIM_BLOCK).block for _ in range(CLEAN_BLOCKS)]
        source.set_fault(kind, True, **params)
        blocks += [source.next_block_of(SIM_BLOCK).block for _ in range(FAULT_BLOCKS)]
        source.set_fault(kind, False)
    blocks += [source.next_block_of(SIM_BLOCK).block for _ in range(CLEAN_BLOCKS)]
    per_window = {
        f.name: np.concatenate([getattr(b, f.name) for b in blocks])
        for f in fields(WindowBlock)
        if f.name not in ("stream_id", "block_number")
    }
    stream = WindowBlock(stream_id=1, block_number=0, **per_window)
    if case.renumbered:  # a window two patterns back, and one (window 4 of 4) one back
        number = stream.pattern_number
        for at in range(1500, stream.n_windows - 400, 1000):
            number[at] = number[at] - 2
            last = np.flatnonzero(number == number[at + 300])[0]
            number[last] -= 1
    return source, stream


@dataclass
class Analysis:
    """What one chunking produced."""

    released: DecodedWindows
    decoder: dict
    state: dict
    result: str


def decoder_for(case: Case, source: WindowSource):
    n = source.n_channels
    if case.scheme == "fast":
        config = source.config
        return HelicityDecoder(
            config.pattern, config.delay_patterns, n, max_pending_windows=MAX_PENDING
        )
    return RotatorDecoder(case.scheme, n, source.config.rotator, max_pending_windows=MAX_PENDING)


def result_text(acc: RunAccumulator) -> str:
    """The run result as JSON: exact (floats by repr, NaN as NaN), comparable with ==."""
    return json.dumps(dataclasses.asdict(run_result(acc, 0.85)), default=measurements)


def measurements(table: MeasurementTable) -> dict:
    """A table of measurements (which :func:`dataclasses.asdict` leaves as it is) as JSON."""
    return {str(key): dataclasses.astuple(m) for key, m in table.items()}


def analyse(case: Case, source: WindowSource, stream: WindowBlock, cuts, resume_at=None):
    """Feed ``stream`` cut at ``cuts``; with ``resume_at`` (a cut index) the accumulator is
    checkpointed there (state through JSON) and restored before going on."""
    decoder = decoder_for(case, source)
    acc = RunAccumulator.for_decoder(source.channel_map, decoder, case.minirun)
    released = []
    edges = [0, *cuts, stream.n_windows]
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if i == resume_at:
            saved = json.loads(json.dumps(acc.state()))
            acc = RunAccumulator.from_state(source.channel_map, saved)
        released.append(decoder.feed(stream.select(slice(a, b))))
        acc.add(released[-1])
    released.append(decoder.flush())
    acc.add(released[-1])
    joined = DecodedWindows.concatenate(released)
    return Analysis(joined, dataclasses.asdict(decoder.state), acc.state(), result_text(acc))


def chunkings(n: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(5)
    return {
        "one window per block": list(range(1, n)),
        "7": list(range(7, n, 7)),
        "101": list(range(101, n, 101)),
        "whole run": [],
        "random": sorted(rng.choice(np.arange(1, n), size=n // 40, replace=False).tolist()),
    }


@pytest.fixture(scope="module", params=list(CASES))
def reference(request):
    case = CASES[request.param]
    source, stream = simulated_stream(case)
    return (
        case,
        source,
        stream,
        analyse(case, source, stream, list(range(13, stream.n_windows, 13))),
    )


def assert_same(a: Analysis, b: Analysis) -> None:
    for name in DecodedWindows.__slots__:
        np.testing.assert_array_equal(getattr(a.released, name), getattr(b.released, name))
    assert a.decoder == b.decoder
    assert a.state == b.state  # floats compared with ==: bit for bit
    assert json.dumps(a.state) == json.dumps(b.state)  # and the sign of zeros too
    assert a.result == b.result


def test_the_reference_stream_exercises_the_analysis(reference) -> None:
    case, _, stream, ref = reference
    errors = ref.decoder["errors"]
    miniruns = ref.state["miniruns"]
    assert len(miniruns) >= 3  # with complete and open summation groups in a minirun:
    assert any(
        m["moments"]["rows"] % GROUP_SAMPLES and m["moments"]["rows"] > GROUP_SAMPLES
        for m in miniruns
    )
    assert errors["missed_windows"] > 0 and errors["rotator_mismatch"] > 0
    assert errors["phase_error"] + errors["settle_violation"] > 0
    assert (ref.released.helicity == 0).any() == (case.stuck_start or case.renumbered)
    assert np.diff(ref.released.seq).min() > 0 and ref.released.seq.size == stream.n_windows


@pytest.mark.parametrize("chunking", list(chunkings(1)))
def test_any_chunking_gives_the_same_analysis(reference, chunking: str) -> None:
    case, source, stream, ref = reference
    cuts = chunkings(stream.n_windows)[chunking]
    assert_same(ref, analyse(case, source, stream, cuts))


def test_big_blocks_worked_through_in_slices_give_the_same_analysis(reference, monkeypatch):
    case, source, stream, ref = reference
    monkeypatch.setattr(accumulator, "SLICE_VALUES", 7 * source.n_channels)  # ~7 windows
    assert_same(ref, analyse(case, source, stream, [stream.n_windows // 3]))


def test_checkpoint_and_resume_anywhere_gives_the_same_analysis(reference) -> None:
    case, source, stream, ref = reference
    rng = np.random.default_rng(11)
    cuts = sorted(rng.choice(np.arange(1, stream.n_windows), size=300, replace=False).tolist())
    for resume_at in rng.choice(len(cuts), size=3, replace=False).tolist():
        assert_same(ref, analyse(case, source, stream, cuts, resume_at=resume_at))


def test_sequential_moments_do_not_depend_on_the_blocks() -> None:
    rng = np.random.default_rng(3)
    samples = rng.normal(1e-3, 2e-2, size=(1000, 5))
    samples[rng.random(samples.shape) < 0.05] = np.nan
    whole = SequentialMoments.empty(5)
    whole.add(samples)
    for seed in range(5):
        cuts = np.sort(np.random.default_rng(seed).choice(1000, size=37, replace=False))
        parts = SequentialMoments.empty(5)
        for block in np.split(samples, cuts):
            parts.add(block)
        assert parts == whole
    stats = whole.stats()
    valid = ~np.isnan(samples)
    np.testing.assert_array_equal(stats.n, valid.sum(axis=0))
    np.testing.assert_allclose(stats.mean, np.nanmean(samples, axis=0), rtol=1e-12)
    m2 = np.nansum((samples - np.nanmean(samples, axis=0)) ** 2, axis=0)
    np.testing.assert_allclose(stats.m2, m2, rtol=1e-12)


def test_state_of_an_older_monitor_is_refused_clearly() -> None:
    """Version 1 states (Welford merged per block) cannot continue bit-identically, nor
    version 2 ones (no good-pattern sums, no per-pattern combined columns), 3 ones (no
    good-pattern sums by null sign), 4 ones (no beam differences and regression sums), 5
    ones (no modulation cut: their good-pattern sums may hold modulation windows) or 6 ones
    (A_FB modulation sums without the cross-ratio target)."""
    cmap = channel_map("alr")
    state = RunAccumulator(cmap, 4, 100).state()
    for old in (1, 2, 3, 4, 5, 6):
        with pytest.raises(ValueError, match=rf"version {old} is not 7.*reanalyze the run"):
            RunAccumulator.from_state(cmap, {**state, "version": old})
    bad = json.loads(json.dumps(state))
    bad["miniruns"][0]["moments"]["open"] = [[0.0], [0.0]]
    with pytest.raises(ValueError, match="sequential moments state"):
        RunAccumulator.from_state(cmap, bad)
