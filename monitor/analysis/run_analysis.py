"""The monitor's numeric core without Channel Access: simulate, re-analyse, import.

:class:`RunAnalysis` feeds window blocks to the decoder and the accumulator, in order, as
:class:`mupnc.monitor.service.OnlineMonitor` does.  The decoders and the accumulator are pure
functions of the window stream, whatever its blocks (:mod:`mupnc.monitor.analysis.accumulator`), so
the
same windows give the same result to the last bit, live, replayed or offline; offline,
many blocks are fed at once (:meth:`RunAnalysis.feed_blocks`), which is much faster.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mupnc.daq.blocks import WindowBlock
from mupnc.daq.channel_map import ChannelMap
from mupnc.db.models import Run
from mupnc.monitor.analysis.accumulator import RunAccumulator
from mupnc.monitor.analysis.blinding import UNBLINDED, Blinder, run_blinder
from mupnc.monitor.analysis.cuts import LowBeamCut
from mupnc.monitor.analysis.results import RunResult, run_result
from mupnc.monitor.decoding.fast import DecodedWindows, DecoderState, HelicityDecoder
from mupnc.monitor.decoding.rotator import RotatorDecoder, make_decoder, minirun_length
from mupnc.monitor.recorder import RunRecorder
from mupnc.monitor.service import RunSettings


class BlindingError(LookupError):
    """A blinded run whose blinding cannot be reproduced here."""


def run_settings(run: Run, blinder: Blinder = UNBLINDED, first_seq: int = 0) -> RunSettings:
    """What the monitor would read from the IOCs serving ``run`` (from its database row)."""
    config = run.config or {}
    channel_map = run.channel_map or config.get("channel_map")
    if not channel_map:
        raise LookupError(f"run {run.number} has no channel map")
    return RunSettings(
        run=run.number,
        pattern=run.pattern or config["pattern"],
        delay_patterns=int(
            run.delay_patterns if run.delay_patterns is not None else config["delay_patterns"]
        ),
        polarization=float(config["polarization"]),
        channel_map=ChannelMap.from_json(json.dumps(channel_map)),
        blinder=blinder,
        scheme=run.scheme or "fast",
        first_seq=first_seq,
    )


def run_blinding(run: Run, unblind: bool = False) -> Blinder:
    """The blinding that reproduces ``run``'s: from ``MUPNC_BLINDING_SEED`` and the box the
    run recorded; identity for an unblinded run or on explicit ``unblind``.  Raises
    :class:`BlindingError` when the seed here does not give the run's checksum."""
    if unblind or not run.blinded:
        return UNBLINDED
    seed = os.environ.get("MUPNC_BLINDING_SEED")
    blinder = run_blinder(True, seed, (run.config or {}).get("blind_box"))
    if not seed or blinder.checksum != run.blinding_checksum:
        raise BlindingError(
            f"run {run.number} is blinded (checksum {run.blinding_checksum}): set "
            "MUPNC_BLINDING_SEED to its blinding seed, or unblind explicitly"
        )
    return blinder


@dataclass
class RunAnalysis:
    """Decoder, cuts and accumulator for one run's settings (see the module docstring).

    ``minirun_patterns`` None takes the scheme's default (:func:`minirun_length`);
    ``low_beam`` (None: no cut) removes patterns that saw low beam from the analysis.
    """

    settings: RunSettings
    minirun_patterns: int | None = None
    low_beam: LowBeamCut | None = None
    decoder: HelicityDecoder | RotatorDecoder = field(init=False)
    acc: RunAccumulator = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.decoder = make_decoder(
            s.scheme, s.pattern, s.delay_patterns, len(s.channel_map.channels)
        )
        self.decoder.state.last_seq = s.first_seq - 1
        minirun = minirun_length(s.scheme, self.minirun_patterns)
        self.acc = RunAccumulator(s.channel_map, self.decoder.size, minirun)

    @property
    def state(self) -> DecoderState:
        return self.decoder.state

    def feed(self, block: WindowBlock) -> None:
        self._accumulate(self.decoder.feed(block))

    def feed_blocks(self, blocks: list[WindowBlock]) -> None:
        """Consecutive blocks as one (the same result as one by one, faster)."""
        if blocks:
            self.feed(WindowBlock.concatenate(blocks))

    def finish(self) -> None:
        """End of run: release every window the decoder still holds."""
        self._accumulate(self.decoder.flush())

    def _accumulate(self, decoded: DecodedWindows) -> None:
        self.acc.add(decoded if self.low_beam is None else self.low_beam.apply(decoded))

    def result(self) -> RunResult:
        return run_result(self.acc, self.settings.polarization, self.settings.blinder)

    def flush(self, recorder: RunRecorder, state: str) -> bool:
        """Write results (and blocks queued in ``recorder``) as the monitor does."""
        return recorder.flush(*self._written(), state)

    def write(self, session: Session, recorder: RunRecorder, state: str) -> None:
        """:meth:`flush` inside the caller's transaction."""
        recorder.write(session, *self._written(), state)

    def _written(self) -> tuple:
        return self.acc, self.state, self.result(), self.state.errors["missed_windows"]
