"""The monitor's PVs over pvAccess (p4p), beside Channel Access: the same names, values,
alarms and timestamps, as normative types.

Nothing here keeps a list of PVs.  :class:`PvaMirror` is built from the caproto channels the
CA server serves (:func:`mupnc.monitor.publisher.result_pv_groups` and the alarm group) and
copies them, after every batch of CA writes, from snapshots taken inside the CA server's
event loop (:meth:`mupnc.monitor.publisher.ResultPublisher.submit`): one source of truth,
posted at the CA publisher's cadence (once a flush, one second), each PV only when its
value, alarm or timestamp moved.

Types (what ``pvget``, ``python -m p4p.client.cli get`` and Phoebus ``pva://`` see):

* a double or long scalar: ``NTScalar`` (``d``, ``i``), an array: ``NTScalarArray``
  (``ad``, ``ai``), each with ``alarm``, ``timeStamp`` and ``display`` (description,
  units, precision, display limits: those of the CA record);
* an enum: ``NTEnum`` (index and choices as over CA);
* a string, or a char waveform holding text (``MON:BEAM:SLOPE_CHANNELS``,
  ``MON:DIT:DEAD_COILS``): ``NTScalar`` string;
* the per-minirun results, which CA cannot carry: ``MON:MINIRUNS``, an ``NTTable`` with one
  row per minirun (:data:`MINIRUN_COLUMNS`); pvAccess only.

Alarms: ``alarm.severity`` is the CA severity (0 NO_ALARM … 3 INVALID); the CA status is
mapped onto pvAccess's coarser ``alarm.status`` as EPICS's own pvAccess server (QSRV) maps a
record's STAT (UDF → 2 DRIVER, STATE → 1 DEVICE, …), and its name is ``alarm.message``
(``UDF``, ``STATE``; empty without an alarm).  Timestamps: the CA timestamp of the same
write, to the same microsecond.

Puts are refused: the one writable monitor PV, ``MON:FB:<LOOP>:MODE``, is switched over CA
(``mupnc feedback``).  The server reads the usual ``EPICS_PVAS_*`` environment (or a
``conf`` dict): ``mupnc demo`` keeps it on loopback on a port of its own
(:func:`mupnc.epics_env.pva_environment`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import numpy as np
from caproto import AlarmStatus, ChannelType, timestamp_to_epics
from p4p.nt import NTEnum, NTScalar, NTTable
from p4p.server import Server, StaticProvider
from p4p.server.thread import SharedPV

from mupnc.daq.record_fields import description
from mupnc.monitor.analysis.results import COMBINED, RunResult

log = logging.getLogger("mupnc.monitor.pva")

EPICS_EPOCH_POSIX = 631152000
"""1990-01-01 UTC in POSIX seconds: CA counts from there, pvAccess from 1970."""

MINIRUNS_PV = "MON:MINIRUNS"
"""The per-minirun table's name after the prefix (pvAccess only)."""
MINIRUN_COLUMNS = (
    ("minirun", "i", "minirun number, from 0"),
    ("patterns", "l", "good patterns"),
    ("asymmetry", "d", "combined physics asymmetry (fraction)"),
    ("error", "d", "its statistical error"),
    ("pull", "d", "(asymmetry - run mean) / error; NaN: not in chi2/ndf (short minirun)"),
    ("regressed", "d", "asymmetry regressed on the beam differences (NaN: not regressed)"),
    ("regressed_error", "d", "its error"),
    ("charge_asymmetry", "d", "beam charge asymmetry (fraction)"),
)
"""Columns of ``MON:MINIRUNS``: name, p4p type code, meaning."""
MINIRUNS_DOC = "Per-minirun results (NTTable, pvAccess only): " + ", ".join(
    name for name, _, _ in MINIRUN_COLUMNS
)

_DEVICE, _DRIVER, _RECORD, _DB = 1, 2, 3, 4
_PVA_STATUS = {
    **dict.fromkeys(("READ", "WRITE", "HIHI", "HIGH", "LOLO", "LOW", "STATE", "COS"), _DEVICE),
    "HWLIMIT": _DEVICE,
    **dict.fromkeys(("COMM", "TIMEOUT", "UDF"), _DRIVER),
    **dict.fromkeys(("CALC", "SCAN", "LINK", "SOFT", "BAD_SUB"), _RECORD),
    **dict.fromkeys(("DISABLE", "SIMM", "READ_ACCESS", "WRITE_ACCESS"), _DB),
}
"""CA alarm status name -> pvAccess ``alarm.status`` (QSRV's mapping; others 6 UNDEFINED)."""

FORMS = ("Default", "String", "Binary", "Decimal", "Hex", "Exponential", "Engineering")
"""``display.form`` choices (those of EPICS's pvAccess server); always Default here."""

Snapshot = tuple[object, int, int, float]
"""A CA channel's value, severity, status and timestamp (POSIX seconds)."""


def pva_alarm(severity: int, status: int) -> dict:
    """The ``alarm`` structure of a CA severity and status."""
    if int(status) == 0:
        return {"severity": int(severity), "status": 0, "message": ""}
    name = AlarmStatus(int(status)).name
    return {"severity": int(severity), "status": _PVA_STATUS.get(name, 6), "message": name}


def pva_time(timestamp: float) -> dict:
    """The ``timeStamp`` of a CA timestamp, converted as caproto sends it (microseconds)."""
    seconds, nanoseconds = timestamp_to_epics(timestamp)
    return {"secondsPastEpoch": seconds + EPICS_EPOCH_POSIX, "nanoseconds": nanoseconds}


def snapshot(channel) -> Snapshot:
    """What a CA client would read of ``channel`` now (call inside the CA server's loop)."""
    value = channel.value
    if isinstance(value, list | tuple | np.ndarray):
        value = tuple(value)
    return value, int(channel.alarm.severity), int(channel.alarm.status), channel.timestamp


def _is_text(channel) -> bool:
    return channel.data_type in (ChannelType.STRING, ChannelType.CHAR)


def _normative_type(channel):
    """The p4p normative type serving a caproto channel (module docstring)."""
    if channel.data_type == ChannelType.ENUM:
        return NTEnum(display=True)
    if _is_text(channel):
        return NTScalar("s", display=True)
    code = "d" if channel.data_type in (ChannelType.DOUBLE, ChannelType.FLOAT) else "i"
    array = getattr(channel, "max_length", 1) > 1
    return NTScalar(("a" if array else "") + code, display=True, form=True)


def _display(channel) -> dict:
    spec = getattr(channel, "pvspec", None)
    display: dict = {"description": description(spec.doc if spec is not None else "")}
    if channel.data_type == ChannelType.ENUM or _is_text(channel):
        return display
    display["units"] = str(getattr(channel, "units", "") or "")
    display["precision"] = int(getattr(channel, "precision", 0) or 0)
    display["limitLow"] = getattr(channel, "lower_disp_limit", 0) or 0
    display["limitHigh"] = getattr(channel, "upper_disp_limit", 0) or 0
    display["form"] = {"index": 0, "choices": list(FORMS)}
    return display


def _value(channel, value: object):
    if channel.data_type == ChannelType.ENUM:
        return {"index": list(channel.enum_strings).index(value)}
    if _is_text(channel):
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if isinstance(value, tuple):
        return np.asarray(value, dtype=float if channel.data_type == ChannelType.DOUBLE else int)
    return value


class PvaMirror:
    """Serves ``channels`` (CA name -> caproto channel) over pvAccess under the same names,
    plus the per-minirun table ``{prefix}MON:MINIRUNS``; :meth:`post` copies snapshots."""

    def __init__(
        self,
        prefix: str,
        channels: Mapping[str, object],
        snapshots: Mapping[str, Snapshot],
        conf: dict | None = None,
    ) -> None:
        self.channels = dict(channels)
        self.pvs: dict[str, SharedPV] = {}
        self._posted: dict[str, Snapshot] = {}
        provider = StaticProvider("mupnc-monitor")
        for name, channel in self.channels.items():
            shot = snapshots[name]
            initial = self._structure(channel, shot)
            if channel.data_type == ChannelType.ENUM:
                initial["value"]["choices"] = list(channel.enum_strings)
            initial["display"] = _display(channel)
            pv = SharedPV(nt=_normative_type(channel), initial=initial)
            pv.put(_refuse_put)
            self.pvs[name] = pv
            self._posted[name] = shot
            provider.add(name, pv)
        self.table_name = prefix + MINIRUNS_PV
        self.table = SharedPV(
            nt=NTTable([(name, code) for name, code, _ in MINIRUN_COLUMNS]), initial=[]
        )
        self.table.put(_refuse_put)
        self._rows: list[dict] | None = None
        provider.add(self.table_name, self.table)
        self._provider = provider
        if conf is None:
            self.server = Server(providers=[provider])
        else:
            self.server = Server(providers=[provider], conf=conf, useenv=False)
        served = self.server.conf()
        log.info(
            "pvAccess: %d PVs on %s (TCP %s, UDP %s)",
            len(self.pvs) + 1,
            served.get("EPICS_PVAS_INTF_ADDR_LIST", ""),
            served.get("EPICS_PVAS_SERVER_PORT", ""),
            served.get("EPICS_PVAS_BROADCAST_PORT", ""),
        )

    @staticmethod
    def _structure(channel, shot: Snapshot) -> dict:
        value, severity, status, timestamp = shot
        return {
            "value": _value(channel, value),
            "alarm": pva_alarm(severity, status),
            "timeStamp": pva_time(timestamp),
        }

    def post(self, snapshots: Mapping[str, Snapshot]) -> int:
        """Post every PV whose snapshot moved since the last post; returns how many."""
        posted = 0
        for name, shot in snapshots.items():
            if self._posted.get(name) == shot or name not in self.pvs:
                continue
            if _same_nan(self._posted.get(name), shot):
                continue
            self.pvs[name].post(self._structure(self.channels[name], shot))
            self._posted[name] = shot
            posted += 1
        return posted

    def post_miniruns(self, rows: list[dict]) -> None:
        """The per-minirun table (:func:`minirun_rows`), when it changed."""
        if rows == self._rows:
            return
        self._rows = rows
        self.table.post(rows, timestamp=time.time())

    def close(self) -> None:
        self.server.stop()
        for pv in [*self.pvs.values(), self.table]:
            pv.close()


def _same_nan(before: Snapshot | None, now: Snapshot) -> bool:
    """NaN != NaN: an unchanged undefined value with the same alarm and time is no change."""
    if before is None:
        return False
    (a, *rest_a), (b, *rest_b) = before, now
    nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return nan and rest_a == rest_b


def _refuse_put(pv, op) -> None:
    op.done(error="read-only over pvAccess (feedback modes: write MON:FB:<LOOP>:MODE over CA)")


def minirun_rows(result: RunResult) -> list[dict]:
    """One row per minirun of ``result`` (the columns of :data:`MINIRUN_COLUMNS`)."""
    pulls = result.pulls.get(COMBINED, ())
    rows = []
    for index, minirun in enumerate(result.miniruns):
        regressed = minirun.regressed
        rows.append(
            {
                "minirun": index,
                "patterns": minirun.patterns_good,
                "asymmetry": minirun.combined.value,
                "error": minirun.combined.error,
                "pull": pulls[index] if index < len(pulls) else math.nan,
                "regressed": regressed.value if regressed is not None else math.nan,
                "regressed_error": regressed.error if regressed is not None else math.nan,
                "charge_asymmetry": minirun.charge_asymmetry.value,
            }
        )
    return rows
