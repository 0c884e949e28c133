"""One run's analysis: decoder, cuts and accumulator, fed window blocks in order.

The live monitor (:class:`mupnc.monitor.service.OnlineMonitor`), ``mupnc sim``,
``reanalyze`` and ``import`` all analyse through :class:`RunAnalysis`.  The decoders and
the accumulator are pure functions of the window stream, whatever its blocks
(:mod:`mupnc.monitor.analysis.accumulator`), so the same windows give the same result to the
last bit, live, replayed or offline; offline, many blocks are fed at once
(:meth:`RunAnalysis.feed_blocks`), which is much faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mupnc.daq.blocks import WindowBlock
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.cuts import LowBeamCut
from mupnc.monitor.analysis.results import RunResult, run_combined, run_result
from mupnc.monitor.analysis.settings import RunSettings
from mupnc.monitor.decoding import make_decoder, minirun_length
from mupnc.monitor.decoding.fast import HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder
from mupnc.monitor.decoding.stream import DecodedWindows, DecoderState


@dataclass
class RunAnalysis:
    """Decoder, cuts and accumulator for one run's settings (see the module docstring).

    ``minirun_patterns`` None takes the scheme's default (:func:`minirun_length`);
    ``low_beam`` (None: no cut) removes patterns that saw low beam from the analysis;
    ``estimator`` (None: chosen from the counts,
    :func:`mupnc.monitor.analysis.results.choose_estimator`) forces one; ``regress`` names
    the beam variables the regressed asymmetries are corrected for (None: every one the
    beam monitors measure; empty: none).
    """

    settings: RunSettings
    minirun_patterns: int | None = None
    low_beam: LowBeamCut | None = None
    estimator: str | None = None
    regress: tuple[str, ...] | None = None
    decoder: HelicityDecoder | RotatorDecoder = field(init=False)
    acc: RunAccumulator = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.decoder = make_decoder(
            s.scheme,
            s.pattern,
            s.delay_patterns,
            len(s.channel_map.channels),
            s.rotator,
            window_rate=s.window_rate,
        )
        self.decoder.state.last_seq = s.first_seq - 1
        minirun = minirun_length(s.scheme, self.minirun_patterns)
        self.acc = RunAccumulator.for_decoder(s.channel_map, self.decoder, minirun)

    @property
    def state(self) -> DecoderState:
        return self.decoder.state

    def feed(self, block: WindowBlock) -> None:
        self._accumulate(self.decoder.feed(block))

    def feed_blocks(self, blocks: list[WindowBlock], at_most: int | None = None) -> None:
        """Consecutive blocks as one (the same result as one by one, faster: fewer and
        larger array operations); with ``at_most``, as few groups as hold at most that many
        window-channel values each (a longer block alone), bounding the copy."""
        group: list[WindowBlock] = []
        values = 0
        for block in blocks:
            size = block.n_windows * block.n_channels
            if group and at_most is not None and values + size > at_most:
                self._feed_group(group)
                group, values = [], 0
            group.append(block)
            values += size
        if group:
            self._feed_group(group)

    def _feed_group(self, blocks: list[WindowBlock]) -> None:
        self.feed(blocks[0] if len(blocks) == 1 else WindowBlock.concatenate(blocks))

    def finish(self) -> None:
        """End of run: release every window the decoder still holds."""
        self._accumulate(self.decoder.flush())

    def _accumulate(self, decoded: DecodedWindows) -> None:
        self.acc.add(decoded if self.low_beam is None else self.low_beam.apply(decoded))

    def result(self) -> RunResult:
        s = self.settings
        return run_result(self.acc, s.polarization, s.blinder, self.estimator, self.regress)

    def newest(self) -> RunResult:
        """The run's combined result alone (:func:`run_combined`), cheap enough to publish
        several times a second."""
        s = self.settings
        return run_combined(self.acc, s.polarization, s.blinder, self.estimator)

    def recordable(self) -> tuple[RunAccumulator, DecoderState, RunResult, int]:
        """What a recorder writes: the accumulator, the decoder's counters, the result and
        the windows lost so far (``RunRecorder.flush(*analysis.recordable(), state)``)."""
        return self.acc, self.state, self.result(), self.state.errors["missed_windows"]
