"""A recorded run's analysis settings and blinding, from its database row (reanalysis,
import and replay read runs this way; the live monitor reads the same from the IOCs)."""

from __future__ import annotations

import json
import os

from mupnc.daq.channel_map import ChannelMap
from mupnc.daq.scheme import stored_rotator
from mupnc.db.models import Run
from mupnc.monitor.analysis.blinding import UNBLINDED, Blinder, run_blinder
from mupnc.monitor.analysis.settings import RunSettings


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
        rotator=stored_rotator(config),
        window_rate=config.get("window_rate"),
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
