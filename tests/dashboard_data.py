"""Writers of dashboard test data into a real database (runs, snapshots, results, miniruns)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
from bokeh.document import Document
from sqlalchemy import Engine

from mupnc.daq.channel_map import ChannelMap
from mupnc.db.models import (
    CUMULATIVE,
    Alarm,
    AsymmetryResult,
    HelicityError,
    Minirun,
    ResultSnapshot,
    Run,
    SlowControlSample,
)
from mupnc.db.session import transaction
from mupnc.db.store import allocate_run, upsert
from mupnc.sim.detector import expected_asymmetry, relative_asymmetries

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CHANNEL_MAP = {
    "mode": "alr",
    "channels": [
        {"name": "det0", "role": "scatter", "acceptance": 1e-3},
        {"name": "det1", "role": "scatter", "acceptance": 1e-3},
        {"name": "bcm", "role": "monitor", "acceptance": 1.0},
    ],
}


def new_run(
    engine: Engine,
    start: datetime | None = T0,
    state: str = "running",
    replay_of: int | None = None,
    **config,
) -> int:
    """A run in ``state`` (simulated, or a replay of run ``replay_of``); ``config`` defaults
    to an injected 5 ppm A_LR, quartets."""
    config = {
        "mode": "alr",
        "asymmetry": 5e-6,
        "blinded": False,
        "pattern": "quartet",
        "window_rate": 240.0,
        "polarization": 0.9,
        "muon_rate": 1e8,
        "delay_patterns": 8,
        "scheme": "fast",
        "channel_map": CHANNEL_MAP,
        **config,
    }
    # what the front door stores with a simulated run (mupnc.runs.run_config)
    channel_map = ChannelMap.from_json(json.dumps(config["channel_map"]))
    preset, dilution = config.get("preset", "flat"), config.get("signal_fraction", 1.0)
    injected = config["asymmetry"]
    config["expected_asymmetry"] = (
        None if injected is None else expected_asymmetry(channel_map, injected, preset, dilution)
    )
    shape = relative_asymmetries(channel_map, preset).tolist()
    config["expected_shape"] = dict(zip(channel_map.names, shape, strict=True))
    with transaction(engine) as session:
        number = allocate_run(
            session,
            source="sim" if replay_of is None else "replay",
            mode=config["mode"],
            config=config,
            replay_of=replay_of,
        )
        run = session.get(Run, number)
        run.state = state
        if start is not None:
            run.start = start
    return number


def add_snapshots(
    engine: Engine, run: int, seconds: list[float], start: datetime = T0, scale: float = 1.0
) -> None:
    """Snapshots at ``seconds`` after ``start`` converging to ``scale`` × 5 ppm (error
    ``scale`` × 10 ppm/√k, k = t + 1); 60 good patterns and 240 windows a second."""
    with transaction(engine) as session:
        for t in seconds:
            k = t + 1
            session.add(
                ResultSnapshot(
                    run=run,
                    time=start + timedelta(seconds=t),
                    patterns_good=int(60 * k),
                    windows=int(240 * k),
                    lost_windows=0,
                    value=scale * (5e-6 + 10e-6 * math.sin(2 * k) / math.sqrt(k)),
                    error=scale * 10e-6 / math.sqrt(k),
                    charge_asymmetry=2e-7 / math.sqrt(k),
                )
            )


def set_channels(
    engine: Engine,
    run: int,
    values: dict[str, tuple[float | None, float | None]],
    minirun: int = CUMULATIVE,
    chi2_ndf: float | None = None,
) -> None:
    rows = [
        dict(
            run=run,
            minirun=minirun,
            channel=c,
            value=v,
            error=e,
            n=1,
            chi2_ndf=chi2_ndf if c == "combined" else None,
        )
        for c, (v, e) in values.items()
    ]
    with transaction(engine) as session:
        upsert(session, AsymmetryResult, rows, ("run", "minirun", "channel"))


def add_miniruns(
    engine: Engine, run: int, count: int, value: float = 5e-6, error: float = 2e-6, seed: int = 3
) -> np.ndarray:
    """``count`` miniruns whose combined means scatter as N(value, error); returns the means."""
    means = np.random.default_rng(seed).normal(value, error, count)
    with transaction(engine) as session:
        upsert(
            session,
            Minirun,
            [dict(run=run, index=i, patterns_good=9000) for i in range(count)],
            ("run", "index"),
        )
    for i, m in enumerate(means):
        set_channels(engine, run, {"combined": (float(m), error)}, minirun=i)
    return means


def set_helicity_errors(engine: Engine, run: int, counts: dict[str, int]) -> None:
    with transaction(engine) as session:
        upsert(
            session,
            HelicityError,
            [dict(run=run, kind=k, count=n) for k, n in counts.items()],
            ("run", "kind"),
        )


def add_alarm(
    engine: Engine,
    name: str,
    severity: str,
    message: str = "",
    state: str = "active",
    since: datetime = T0,
    acknowledged: bool = False,
    run: int | None = None,
) -> int:
    with transaction(engine) as session:
        alarm = Alarm(
            run=run,
            name=name,
            severity=severity,
            state=state,
            since=since,
            message=message,
            acknowledged=acknowledged,
        )
        session.add(alarm)
        session.flush()
        return alarm.id


def add_samples(
    engine: Engine, pv: str, seconds: list[float], value: float, start: datetime = T0
) -> None:
    """Archived samples of ``pv`` at ``seconds`` after ``start``, all equal to ``value``."""
    with transaction(engine) as session:
        session.add_all(
            SlowControlSample(pv=pv, time=start + timedelta(seconds=t), value=value)
            for t in seconds
        )


def by_name(doc: Document, name: str):
    """The model of ``doc`` named ``name`` (the test fails if there is none)."""
    model = doc.get_model_by_name(name)
    assert model is not None, name
    return model


def shifter_page(db_url: str) -> Document:
    """The shifter page of the database's newest run, as one poll of a feed shows it."""
    from mupnc.dashboards.feed import Feed
    from mupnc.dashboards.live import make_document

    feed = Feed(db_url)
    try:
        feed.poll()
        doc = Document()
        make_document(doc, feed)
    finally:
        feed.stop()
    return doc
