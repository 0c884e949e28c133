"""HelicityDecoder against the simulator's truth: lossless release, sorting, error counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pytest

from mupnc.daq.blocks import WindowBlock
from mupnc.daq.helicity import pattern_shape
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.stream import ERROR_KINDS, DecodedWindows
from mupnc.sim.source import SourceConfig, WindowSource

BLOCK_SIZES = (7, 12, 13)
PATTERNS = ("pair", "quartet", "octet", "thue-morse-64")

Modifier = Callable[[WindowBlock], WindowBlock]


@dataclass
class Outcome:
    decoder: HelicityDecoder
    fed_seq: np.ndarray  # seq of every window fed to the decoder
    fed_counts: np.ndarray
    truth: dict[int, int]  # seq -> actual helicity, for every window fed
    released: DecodedWindows  # everything released, concatenated in release order
    releases: int  # how many feed/flush calls released at least one window


def run(
    pattern: str,
    delay: int,
    n_windows: int,
    modify: Modifier | None = None,
    sizes: tuple[int, ...] = BLOCK_SIZES,
    seed: int = 3,
) -> Outcome:
    """Feed ``n_windows`` simulated windows in blocks of cycling ``sizes``, then flush."""
    config = SourceConfig(pattern=pattern, delay_patterns=delay, seed=seed)
    source = WindowSource(config)
    decoder = HelicityDecoder(pattern, delay, source.n_channels)
    fed_seq, fed_counts, truth_seq, truth_hel, outputs = [], [], [], [], []
    produced, i = 0, 0
    while produced < n_windows:
        size = min(sizes[i % len(sizes)], n_windows - produced)
        i += 1
        simulated = source.next_block_of(size)
        produced += size
        truth_seq.append(simulated.block.seq)
        truth_hel.append(simulated.actual_helicity)
        block = modify(simulated.block) if modify else simulated.block
        fed_seq.append(block.seq)
        fed_counts.append(block.counts)
        outputs.append(decoder.feed(block))
    outputs.append(decoder.flush())
    released = DecodedWindows.concatenate(outputs)
    all_seq, all_hel = np.concatenate(truth_seq).tolist(), np.concatenate(truth_hel).tolist()
    truth = dict(zip(all_seq, all_hel, strict=True))
    return Outcome(
        decoder,
        np.concatenate(fed_seq),
        np.concatenate(fed_counts),
        truth,
        released,
        sum(o.n_windows > 0 for o in outputs),
    )


def assert_lossless_and_correct(out: Outcome) -> None:
    """Every fed window released exactly once, in order, with its true helicity."""
    rel = out.released
    state = out.decoder.state
    assert rel.n_windows == out.fed_seq.size
    assert state.windows_seen == state.windows_released == out.fed_seq.size
    np.testing.assert_array_equal(rel.seq, out.fed_seq)  # in order, no duplicates, none lost
    np.testing.assert_array_equal(rel.counts, out.fed_counts)
    truth = np.array([out.truth[s] for s in rel.seq.tolist()])
    np.testing.assert_array_equal(rel.helicity, truth)
    assert state.windows_undecoded == 0


@pytest.mark.parametrize("delay", [0, 2, 8])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_clean_stream_all_windows_sorted(pattern: str, delay: int) -> None:
    size = pattern_shape(pattern).size
    n = 200 * size if size < 64 else 120 * size  # well past the 30 + 30 patterns of a trusted lock
    out = run(pattern, delay, n)
    assert_lossless_and_correct(out)
    assert all(v == 0 for v in out.decoder.state.errors.values()), out.decoder.state.errors
    assert out.released.good.all()
    assert out.decoder.state.patterns_good == n // size
    assert out.decoder.locked
    # windows are released while the run goes on, not only at the end
    assert out.releases > 3


@pytest.mark.parametrize(
    ("pattern", "delay"), [("pair", 2), ("quartet", 8), ("octet", 0), ("thue-morse-64", 2)]
)
def test_clean_stream_100k_windows(pattern: str, delay: int) -> None:
    size = pattern_shape(pattern).size
    n = -(-100_000 // size) * size  # >= 1e5 windows, whole patterns
    out = run(pattern, delay, n, seed=11)
    assert_lossless_and_correct(out)
    assert out.decoder.state.errors == dict.fromkeys(ERROR_KINDS, 0)
    assert out.decoder.state.patterns_good == n // size
    assert out.released.good.all()


def flip_pattern(target: int) -> Modifier:
    """Flip the reported helicity of every window of pattern ``target`` (shape stays intact)."""

    def modify(block: WindowBlock) -> WindowBlock:
        hit = block.pattern_number == target
        if not hit.any():
            return block
        reported = np.where(hit, -block.reported_helicity, block.reported_helicity)
        return replace(block, reported_helicity=reported.astype(np.int8))

    return modify


@pytest.mark.parametrize("delay", [0, 2, 8])
@pytest.mark.parametrize("pattern", ["pair", "quartet", "thue-morse-64"])
def test_reported_bit_flip(pattern: str, delay: int) -> None:
    size = pattern_shape(pattern).size
    n_patterns = 150
    target = 70  # after the first lock, with room for re-learning (30 + 30 patterns) after it
    out = run(pattern, delay, n_patterns * size, modify=flip_pattern(target))
    errors = out.decoder.state.errors
    assert errors["prediction_mismatch"] == 1
    assert {k: v for k, v in errors.items() if k != "prediction_mismatch"} == dict.fromkeys(
        set(ERROR_KINDS) - {"prediction_mismatch"}, 0
    )
    # the flipped report never sorts a window: every window keeps its true helicity
    assert_lossless_and_correct(out)
    # the mismatched pattern is cut from the analysis, the others are not
    bad = out.released.pattern_number[~out.released.good]
    assert set(bad.tolist()) == {target}
    assert out.decoder.state.patterns_good == n_patterns - 1


def drop_windows(seqs: set[int]) -> Modifier:
    def modify(block: WindowBlock) -> WindowBlock:
        keep = ~np.isin(block.seq, list(seqs))
        if keep.all():
            return block
        return block.select(keep)

    return modify


@pytest.mark.parametrize(
    "dropped",
    [
        {500},  # one window inside a pattern
        {500, 501, 502},  # several consecutive windows
        {400, 401, 402, 403, 404, 405, 406, 407},  # whole patterns (quartet 100, 101)
        {300, 650, 651},  # two separate gaps
        {12, 13, 14, 15, 16},  # spanning block boundaries (7 | 12 | 13) before the lock
    ],
)
def test_missed_windows_counted_exactly(dropped: set[int]) -> None:
    n = 1000 * 4
    out = run("quartet", 2, n, modify=drop_windows(dropped))
    state = out.decoder.state
    assert state.errors["missed_windows"] == len(dropped)
    assert out.fed_seq.size == n - len(dropped)
    # the remaining windows are all released once, sorted correctly
    assert_lossless_and_correct(out)
    # incomplete patterns are cut from the analysis (counted as phase errors)
    incomplete = {s // 4 for s in dropped} - {s // 4 for s in out.fed_seq.tolist()}
    partial = {s // 4 for s in dropped} - incomplete
    assert state.errors["phase_error"] == len(partial)
    assert state.errors["prediction_mismatch"] == 0
    bad = set(out.released.pattern_number[~out.released.good].tolist())
    assert bad == partial
    assert state.patterns_good == n // 4 - len(partial) - len(incomplete)


def test_missed_windows_at_block_start() -> None:
    """A gap between the last window of one block and the first of the next."""
    out = run("octet", 2, 2000, modify=drop_windows({19, 20}), sizes=(19, 20))
    assert out.decoder.state.errors["missed_windows"] == 2
    assert_lossless_and_correct(out)


def stick_pattern(target: int) -> Modifier:
    """Every window of pattern ``target`` reports helicity +1 (a stuck helicity line)."""

    def modify(block: WindowBlock) -> WindowBlock:
        hit = block.pattern_number == target
        if not hit.any():
            return block
        reported = np.where(hit, 1, block.reported_helicity).astype(np.int8)
        return replace(block, reported_helicity=reported)

    return modify


@pytest.mark.parametrize("pattern", ["pair", "quartet", "octet", "thue-morse-64"])
@pytest.mark.parametrize("target", [10, 80])  # while learning, and after the lock
def test_stuck_helicity(pattern: str, target: int) -> None:
    size = pattern_shape(pattern).size
    n_patterns = 160
    out = run(pattern, 2, n_patterns * size, modify=stick_pattern(target))
    errors = out.decoder.state.errors
    assert errors["stuck_helicity"] == 1
    assert errors["prediction_mismatch"] == 0
    assert errors["pattern_shape"] == 0
    assert errors["phase_error"] == 0
    assert_lossless_and_correct(out)
    assert set(out.released.pattern_number[~out.released.good].tolist()) == {target}


@pytest.mark.parametrize("target", range(0, 45, 1))
def test_bit_flip_while_learning_never_mis_sorts(target: int) -> None:
    """A flipped report among the 30 bits the state is learned from must not be trusted.

    Regression: with 4 confirming predictions, a state learned with one wrong bit (aged
    8..23 patterns at lock) predicted the next >= 4 bits right, was trusted, and pattern
    ``target - delay`` was released as good with the opposite helicity.
    """
    out = run("quartet", 2, 150 * 4, modify=flip_pattern(target))
    assert out.decoder.state.errors["prediction_mismatch"] == 1
    assert_lossless_and_correct(out)
    assert out.decoder.state.patterns_good == 149


@pytest.mark.parametrize("targets", [(10, 20), (3, 17, 26), (12, 45)])
def test_several_flips_never_mis_sort(targets: tuple[int, ...]) -> None:
    def modify(block: WindowBlock) -> WindowBlock:
        for target in targets:
            block = flip_pattern(target)(block)
        return block

    out = run("octet", 2, 200 * 8, modify=modify)
    assert 1 <= out.decoder.state.errors["prediction_mismatch"] <= len(targets)
    assert_lossless_and_correct(out)
