"""Faults injected by the simulator (sim/faults.py) are flagged by the decoders in time,
and clean streams of >= 1e6 windows raise no flag at all."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.daq.scheme import RotatorSequence
from mupnc.monitor.decoding import make_decoder
from mupnc.monitor.decoding.stream import ERROR_KINDS, DecodedWindows
from mupnc.sim.faults import fault_bit
from mupnc.sim.source import SourceConfig, WindowSource

ONE_CHANNEL = ChannelMap(mode="alr", channels=(Channel("scat", "scatter", 1e-6, 0.0),))
SLOW = dict(flip_period=0.5, ramp_time=0.05, settle_time=0.05)  # 120-window intervals
INTERVAL = 120


@dataclass
class Stream:
    """A simulated run fed to the decoder for its scheme, one block per pattern/interval."""

    scheme: str
    pattern: str = "quartet"
    seed: int = 4
    source: WindowSource = field(init=False)
    decoder: object = field(init=False)
    released: list[DecodedWindows] = field(default_factory=list)
    truth: dict[int, tuple[int, int]] = field(default_factory=dict)  # seq -> (helicity, fault)

    def __post_init__(self) -> None:
        extra = SLOW if self.scheme != "fast" else {}
        config = SourceConfig(
            scheme=self.scheme,
            pattern=self.pattern,
            channel_map=ONE_CHANNEL,
            muon_rate=1e7,
            seed=self.seed,
            **extra,
        )
        self.source = WindowSource(config)
        self.decoder = make_decoder(self.scheme, self.pattern, 2, 1, config.rotator)
        self.block = self.source.shape.size if self.scheme == "fast" else INTERVAL

    def feed(self, blocks: int, windows: int | None = None) -> None:
        for _ in range(blocks):
            simulated = self.source.next_block_of(windows or self.block)
            seq = simulated.block.seq.tolist()
            self.truth.update(
                zip(
                    seq,
                    zip(simulated.actual_helicity.tolist(), simulated.fault.tolist(), strict=True),
                    strict=True,
                )
            )
            self.released.append(self.decoder.feed(simulated.block, simulated.rotator_readback))

    def finish(self) -> DecodedWindows:
        self.released.append(self.decoder.flush())
        return DecodedWindows.concatenate(self.released)

    @property
    def errors(self) -> dict[str, int]:
        return dict(self.decoder.state.errors)


FAST_FAULTS = [
    ("helicity_flip", {"probability": 1.0}, "prediction_mismatch"),
    ("stuck_helicity", {"value": 1.0}, "stuck_helicity"),
    ("missed_windows", {"probability": 1.0}, "missed_windows"),
    ("phase_error", {"probability": 1.0}, "phase_error"),
    ("rotator_mismatch", {}, "rotator_mismatch"),
]


def assert_released_correctly(
    out: DecodedWindows, stream: Stream, kind: str, cut: bool = True
) -> None:
    """Every published window released once, sorted by its true helicity; the faulty
    pattern(s) cut from the analysis if ``cut``."""
    truth = np.array([stream.truth[s] for s in out.seq.tolist()])
    assert out.seq.size == len(stream.truth)
    np.testing.assert_array_equal(np.diff(out.seq) > 0, True)
    np.testing.assert_array_equal(out.helicity, truth[:, 0])
    hit = (truth[:, 1] & fault_bit(kind)) != 0
    hit_patterns = np.unique(out.pattern_number[hit])
    assert hit_patterns.size >= 1
    assert out.good[np.isin(out.pattern_number, hit_patterns)].any() != cut


@pytest.mark.parametrize(("kind", "params", "flag"), FAST_FAULTS)
def test_fast_fault_flagged_within_one_pattern(kind: str, params: dict, flag: str) -> None:
    stream = Stream("fast")
    stream.feed(80)  # locked and trusted (30 + 30 patterns)
    assert stream.decoder.locked and all(v == 0 for v in stream.errors.values())
    stream.source.set_fault(kind, True, **params)
    stream.feed(1)  # one faulty pattern
    stream.source.set_fault(kind, False)
    stream.feed(1)  # ... and one more: by now it must be flagged
    assert stream.errors[flag] >= 1, stream.errors
    stream.feed(80)
    out = stream.finish()
    assert_released_correctly(out, stream, kind)


SLOW_FAULTS = [
    ("helicity_flip", {"probability": 1.0}, ("prediction_mismatch",)),
    ("stuck_helicity", {"value": 1.0}, ("prediction_mismatch", "stuck_helicity")),
    ("missed_windows", {"probability": 1.0}, ("missed_windows",)),
    ("phase_error", {"probability": 1.0}, ("phase_error",)),
    ("rotator_mismatch", {}, ("rotator_mismatch",)),
    ("settle_violation", {}, ("settle_violation",)),
    ("frequency_drift", {"fraction": 0.25}, ("reversal_period",)),
]


@pytest.mark.parametrize("scheme", ["slow", "kick"])
@pytest.mark.parametrize(("kind", "params", "flags"), SLOW_FAULTS)
def test_slow_fault_flagged_within_one_reversal(
    scheme: str, kind: str, params: dict, flags: tuple[str, ...]
) -> None:
    stream = Stream(scheme)
    stream.feed(9)  # intervals 0..8; locked at the first reversal
    assert stream.decoder.locked and all(v == 0 for v in stream.errors.values())
    if kind == "stuck_helicity":  # stuck on the state interval 9 should not have
        params = {
            "value": -float(RotatorSequence(stream.source.config.rotator_pattern).relative(9))
        }
    stream.source.set_fault(kind, True, **params)
    stream.feed(1)  # interval 9 is faulty (a drifting clock shortens interval 10 on)
    stream.source.set_fault(kind, False)
    # the next interval (one reversal later) closes the faulty one
    stream.feed(1, windows=INTERVAL * 4 // 5 if kind == "frequency_drift" else None)
    stream.feed(1, windows=1)  # the first window after it closes the interval
    assert sum(stream.errors[f] for f in flags) >= 1, stream.errors
    if kind == "frequency_drift":
        return  # the period changed, nothing was mis-sorted: only flagged
    stream.feed(6)
    out = stream.finish()
    # a slow pattern that lost windows stays good: mean yields per helicity stay unbiased
    assert_released_correctly(out, stream, kind, cut=kind != "missed_windows")


@pytest.mark.parametrize(
    ("scheme", "pattern"), [("fast", "quartet"), ("fast", "octet"), ("slow", ""), ("kick", "")]
)
def test_no_false_flags_in_a_million_clean_windows(scheme: str, pattern: str) -> None:
    stream = Stream(scheme, pattern=pattern or "quartet", seed=17)
    stream.block = 1000 if scheme == "fast" else 997  # blocks cut patterns and intervals
    blocks = 1000 if scheme == "fast" else 1004
    stream.feed(blocks)
    out = stream.finish()
    assert out.seq.size == blocks * stream.block >= 1_000_000
    assert stream.errors == dict.fromkeys(ERROR_KINDS, 0)
    truth = np.array([stream.truth[s][0] for s in out.seq.tolist()])
    np.testing.assert_array_equal(out.helicity, truth)
    if scheme == "fast":
        assert out.good.all()
    else:  # all but the gate: ramp + settle (slow, 24 of 120 windows) or settle (kick, 12)
        gate = 24 if scheme == "slow" else 12
        assert abs(out.good.mean() - (INTERVAL - gate) / INTERVAL) < 1e-3
