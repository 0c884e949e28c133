"""Writes the monitor's state to the database, one transaction per flush.

Rows hold absolute (cumulative) values and are upserted, so a retried or repeated flush
never double counts.  Only miniruns changed since the last flush are rewritten.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sqlalchemy import Engine, update

from db.models import (
    CUMULATIVE,
    AsymmetryResult,
    HelicityCounts,
    HelicityError,
    Minirun,
    ResultSnapshot,
    Run,
)
from db.session import transaction
from db.store import upsert
from monitor.accumulator import MINUS, PLUS, RunAccumulator
from monitor.decoder import DecoderState
from monitor.results import RunResult, minirun_result


def _float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _result_rows(run: int, minirun: int, result: RunResult) -> list[dict]:
    rows = [
        dict(
            run=run,
            minirun=minirun,
            channel=name,
            value=_float(m.value),
            error=_float(m.error),
            n=m.n,
            chi2_ndf=None,
        )
        for name, m in result.channels.items()
    ]
    c, q = result.combined, result.charge_asymmetry
    rows.append(
        dict(
            run=run,
            minirun=minirun,
            channel="combined",
            value=_float(c.value),
            error=_float(c.error),
            n=c.n,
            chi2_ndf=_float(result.chi2_ndf),
        )
    )
    rows.append(
        dict(
            run=run,
            minirun=minirun,
            channel="charge",
            value=_float(q.value),
            error=_float(q.error),
            n=q.n,
            chi2_ndf=None,
        )
    )
    return rows


def record(
    engine: Engine,
    run: int,
    acc: RunAccumulator,
    decoder: DecoderState,
    result: RunResult,
    polarization: float,
    lost_windows: int,
    state: str,
) -> None:
    """Write everything that changed, the cumulative result and a snapshot, atomically."""
    names = acc.channel_map.names
    minirun_rows, count_rows, result_rows = [], [], []
    for index in sorted(acc.dirty):
        m = acc.miniruns[index]
        minirun_rows.append(dict(run=run, index=index, patterns_good=m.patterns_good))
        for c, name in enumerate(names):
            for slot, helicity in ((PLUS, 1), (MINUS, -1)):
                count_rows.append(
                    dict(
                        run=run,
                        minirun=index,
                        channel=name,
                        helicity=helicity,
                        counts=int(m.counts[slot, c]),
                        windows=int(m.windows[slot]),
                        beam_monitor=float(m.beam_monitor[slot]),
                    )
                )
            count_rows.append(
                dict(
                    run=run,
                    minirun=index,
                    channel=name,
                    helicity=0,
                    counts=int(m.undecoded_counts[c]),
                    windows=m.undecoded_windows,
                    beam_monitor=0.0,
                )
            )
        result_rows += _result_rows(run, index, minirun_result(m, acc, polarization))
    result_rows += _result_rows(run, CUMULATIVE, result)
    error_rows = [dict(run=run, kind=k, count=v) for k, v in decoder.errors.items()]
    with transaction(engine) as session:
        upsert(session, Minirun, minirun_rows, ("run", "index"))
        upsert(session, HelicityCounts, count_rows, ("run", "minirun", "channel", "helicity"))
        upsert(session, AsymmetryResult, result_rows, ("run", "minirun", "channel"))
        upsert(session, HelicityError, error_rows, ("run", "kind"))
        session.add(
            ResultSnapshot(
                run=run,
                time=datetime.now(UTC),
                patterns_good=result.patterns_good,
                windows=decoder.windows_released,
                lost_windows=lost_windows,
                value=_float(result.combined.value),
                error=_float(result.combined.error),
                charge_asymmetry=_float(result.charge_asymmetry.value),
            )
        )
        values = dict(
            state=state,
            windows=decoder.windows_released,
            lost_windows=lost_windows,
            last_seq=decoder.last_seq,
        )
        if state in ("ended", "aborted"):
            values["end"] = datetime.now(UTC)
        session.execute(update(Run).where(Run.number == run).values(**values))
    acc.dirty.clear()
