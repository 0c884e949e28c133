"""Record-like PV classes for the IOCs: analog readbacks with HYST, validated setpoints.

caproto gives every ``record='ai'``/``'ao'`` PV the EPICS fields (DESC, EGU, HIHI/HIGH/
LOW/LOLO, HHSV/HSV/LSV/LLSV, HYST, SEVR, STAT, ...); :class:`mupnc.daq.record_fields.RecordGroup`
makes DESC, EGU, HOPR/LOPR, DRVH/DRVL and UDF tell the truth for every PV.  What the
IOC's records need beyond that is added here:

* :class:`AnalogReadback` evaluates its limit alarms with EPICS ``HYST`` semantics
  (:func:`mupnc.ioc.limits.check_limits`), reading the limits, severities and HYST from its
  own fields, so ``caput PV.HYST 2`` works as on a real IOC.
* :class:`NumericSetpoint`, :class:`EnumSetpoint` and :class:`BlockAcknowledgement`
  refuse a bad put *before* it reaches the record, judging the value as it came on the
  wire (caproto's conversion would turn NaN or "" into state 0 and truncate 1.5): NaN,
  ±inf, outside DRVL..DRVH, an array where a scalar is expected, a string that is not a
  number, an enum index that is not an integer or outside its states.  The client gets
  ``ECA_PUTFAIL``, the record keeps its value and alarm state, and the refusal is logged
  in one line naming the client (no traceback).
* Access: these setpoints grant write access only to the clients listed in
  ``MUPNC_CA_WRITERS`` (host names or USER@HOST, as Channel Access reports them; unset:
  everyone).  caproto 1.3.0 has no EPICS access security (ASG/ACF files); this is its
  ``check_access`` hook.  CA host names are told by the client, not verified: this
  keeps honest clients from writing by mistake, the network layout keeps others out.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from caproto import (
    AccessRights,
    AlarmSeverity,
    AlarmStatus,
    CaprotoValueError,
    ChannelType,
    Forbidden,
)
from caproto._dbr import native_type
from caproto.server import pvproperty
from caproto.server.server import (
    PvpropertyDouble,
    PvpropertyDoubleRO,
    PvpropertyEnum,
    PvpropertyEnumRO,
    PvpropertyInteger,
)

from mupnc.daq.blocks import CONSUMER_HAS_RUN, CONSUMER_READY, NO_CONSUMER
from mupnc.daq.severity import Severity
from mupnc.ioc.limits import AlarmLimits, check_limits

log = logging.getLogger("mupnc.ioc")

_ACK_TYPES = (ChannelType.PUT_ACKS, ChannelType.PUT_ACKT)


def _severity_index(field: Any) -> int:
    value = field.value
    return Severity[value] if isinstance(value, str) else int(value)


class AnalogReadback(PvpropertyDoubleRO):
    """Read-only analog value (``ai``) whose limit alarms honour ``HYST``."""

    def __init__(self, *, limits: AlarmLimits | None = None, **kwargs: Any) -> None:
        limits = limits or AlarmLimits()
        kwargs.update(
            upper_alarm_limit=limits.hihi,
            upper_warning_limit=limits.high,
            lower_warning_limit=limits.low,
            lower_alarm_limit=limits.lolo,
        )
        super().__init__(**kwargs)
        fields = self.field_inst
        fields.alarm_deadband._data["value"] = limits.hyst
        for name, value in (
            ("hihi_alarm_limit", limits.hihi),
            ("high_alarm_limit", limits.high),
            ("low_alarm_limit", limits.low),
            ("lolo_alarm_limit", limits.lolo),
            ("hihi_severity", Severity(limits.hhsv).name),
            ("high_severity", Severity(limits.hsv).name),
            ("low_severity", Severity(limits.lsv).name),
            ("lolo_severity", Severity(limits.llsv).name),
        ):
            getattr(fields, name)._data["value"] = value
        self._last_alarmed = math.nan
        _guard_fields(self)

    async def set_limits(self, lolo: float, low: float, high: float, hihi: float, hyst: float):
        """Change the alarm limits and HYST, through the fields (so .LOLO etc. read back)."""
        fields = self.field_inst
        await fields.lolo_alarm_limit.write(lolo)
        await fields.low_alarm_limit.write(low)
        await fields.high_alarm_limit.write(high)
        await fields.hihi_alarm_limit.write(hihi)
        await fields.alarm_deadband.write(hyst)

    def alarm_limits(self) -> AlarmLimits:
        """The limits now in force, as the record's fields hold them."""
        fields = self.field_inst
        return AlarmLimits(
            hihi=self.upper_alarm_limit,
            high=self.upper_warning_limit,
            low=self.lower_warning_limit,
            lolo=self.lower_alarm_limit,
            hhsv=_severity_index(fields.hihi_severity),
            hsv=_severity_index(fields.high_severity),
            lsv=_severity_index(fields.low_severity),
            llsv=_severity_index(fields.lolo_severity),
            hyst=float(fields.alarm_deadband.value),
        )

    async def verify_value(self, value: Any) -> Any:
        value = await super().verify_value(value)
        outcome = check_limits(float(value), self.alarm_limits(), self._last_alarmed)
        self._last_alarmed = outcome.last_alarmed
        self.field_inst.last_value_alarmed._data["value"] = outcome.last_alarmed
        self.status = AlarmStatus[outcome.status]
        self.severity = AlarmSeverity(outcome.severity)
        return value


class PutRefusedError(CaprotoValueError):
    """A Channel Access put a setpoint refuses (wrong type, size or value)."""


def _carried_value(data: Any, data_type: ChannelType, encoding: str) -> str | float:
    """The one value a put carries, before any conversion: its text (``DBR_STRING``) or its
    number (every numeric type, and a single ``DBR_CHAR``).  Raises :class:`PutRefusedError`."""
    if len(data) != 1:
        raise PutRefusedError(f"expected one value, got {len(data)}")
    if native_type(data_type) == ChannelType.STRING:
        return bytes(data[0]).decode(encoding, errors="replace")
    return float(data[0])


def _number(value: str | float) -> float:
    """The number a put carries; text is parsed as caproto would, an empty text refused."""
    if not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise PutRefusedError(f"{value!r} is not a number") from None


def _index(value: str | float, what: str) -> int:
    """A finite, integral number (caproto would truncate 1.5 and turn NaN into 0)."""
    number = _number(value)
    if not math.isfinite(number) or number != int(number):
        raise PutRefusedError(f"{value!r} is not {what}")
    return int(number)


WRITERS = "MUPNC_CA_WRITERS"
"""Environment variable of the IOC: the CA clients that may write its setpoints, as host
names or USER@HOST, separated by spaces or commas; unset or empty, every client may."""


def writers() -> frozenset[str]:
    """The clients :data:`WRITERS` allows to write (empty: every client)."""
    return frozenset(os.environ.get(WRITERS, "").replace(",", " ").split())


def writer_access(access: AccessRights, hostname: str, username: str) -> AccessRights:
    """``access`` without WRITE unless :func:`writers` is empty or lists the client."""
    allowed = writers()
    if not allowed or hostname in allowed or f"{username}@{hostname}" in allowed:
        return access
    return access & ~AccessRights.WRITE


def _guard_fields(record: Any) -> None:
    """Apply :func:`writer_access` to every field of ``record`` too (.DRVH, .HIHI, .HYST,
    .ZRST, .PROC, ...): caproto serves them writable to any client."""

    def guarded(check):
        return lambda hostname, username: writer_access(
            check(hostname, username), hostname, username
        )

    fields = record.field_inst.pvdb.values() if record.field_inst is not None else ()
    for field in fields:
        field.check_access = guarded(field.check_access)


class _RefusesBadPuts:
    """Mixin: :meth:`check_put` sees every CA put (its wire value, before caproto converts
    it); a refusal reaches the client as ``ECA_PUTFAIL`` and is logged in one line with
    the client's user and host."""

    def check_put(self, value: str | float) -> None:
        """Raise :class:`PutRefusedError` unless ``value`` (text or number) is acceptable."""
        raise NotImplementedError

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        if data_type not in _ACK_TYPES:
            self.check_put(_carried_value(data, data_type, self.string_encoding))
        return await super().write_from_dbr(data, data_type, metadata, flags=flags)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _guard_fields(self)

    def check_access(self, hostname: str, username: str) -> AccessRights:
        """Write access only for the clients :func:`writers` lists (all if it is empty)."""
        return writer_access(super().check_access(hostname, username), hostname, username)

    async def auth_write(self, hostname, username, data, data_type, metadata, **kwargs):
        try:
            if AccessRights.WRITE not in self.check_access(hostname, username):
                raise PutRefusedError(f"no write access ({username}@{hostname} not in {WRITERS})")
            return await super().auth_write(hostname, username, data, data_type, metadata, **kwargs)
        except PutRefusedError as refusal:
            log.warning("refused put to %s by %s@%s: %s", self.pvname, username, hostname, refusal)
            raise


class NumericSetpoint(_RefusesBadPuts, PvpropertyDouble):
    """Writable analog setpoint (``ao``); DRVL..DRVH are the control limits.

    :meth:`check_put` enforces the channel's control limits (``lower_ctrl_limit``,
    ``upper_ctrl_limit``: DBR_CTRL); the .DRVL/.DRVH fields show them and are read-only
    (:mod:`mupnc.daq.record_fields`): a client cannot widen them."""

    def preset_drive_limits(self, low: float, high: float) -> None:
        """Accept only ``low..high`` (the PV's units; also its display range), set before
        the IOC serves: no update is published."""
        self._data.update(
            lower_ctrl_limit=low, upper_ctrl_limit=high, lower_disp_limit=low, upper_disp_limit=high
        )
        self._show_limits()

    def check_put(self, value: str | float) -> None:
        number = _number(value)
        if not math.isfinite(number):
            raise PutRefusedError(f"{number} is not a finite number")
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        if not lo <= number <= hi:
            raise PutRefusedError(f"{number:g} is outside {lo:g}..{hi:g} {self.units}".rstrip())


class EnumSetpoint(_RefusesBadPuts, PvpropertyEnum):
    """Writable enum; only its own states, by name or by index, are accepted."""

    def check_put(self, value: str | float) -> None:
        states = self.enum_strings
        if isinstance(value, str):
            if value not in states:
                raise PutRefusedError(f"{value!r} is not a state ({', '.join(states)})")
            return
        index = _index(value, "a state index")
        if not 0 <= index < len(states):
            raise PutRefusedError(f"state {index} outside 0..{len(states) - 1}")


class BlockAcknowledgement(_RefusesBadPuts, PvpropertyInteger):
    """The number of the last block a consumer took: -1 (ready, none yet) up to the block
    its group is publishing, one past the group's ``block_number`` PV (the DAQ writes that
    number after the block, so a quick consumer may acknowledge a block before it); -3
    once it has the whole ended run (:data:`mupnc.daq.blocks.CONSUMER_HAS_RUN`)."""

    def check_put(self, value: str | float) -> None:
        number = _index(value, "a block number")
        newest = int(self.group.block_number.value) + 1
        if not (CONSUMER_READY <= number <= newest or number == CONSUMER_HAS_RUN):
            raise PutRefusedError(f"block {number} is not one published (-1..{newest})")


class _RefusalTracebacks(logging.Filter):
    """caproto logs every failed put with a traceback; a refusal (already logged in one line
    by :class:`_RefusesBadPuts`) is dropped, caproto's own refusal of a write to a
    read-only PV keeps its one-line message without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, PutRefusedError):
            return False
        if isinstance(error, Forbidden):
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("caproto.circ").addFilter(_RefusalTracebacks())


def analog_readback(
    name: str,
    doc: str,
    units: str = "",
    precision: int = 3,
    limits: AlarmLimits | None = None,
    display: tuple[float, float] = (0.0, 0.0),
) -> pvproperty:
    """A read-only ``ai`` PV with display limits (LOPR, HOPR) and HYST-aware alarm limits."""
    return pvproperty(
        value=0.0,
        name=name,
        doc=doc,
        units=units,
        precision=precision,
        dtype=AnalogReadback,
        record="ai",
        limits=limits,
        lower_disp_limit=display[0],
        upper_disp_limit=display[1],
        read_only=True,
    )


def numeric_setpoint(
    name: str, doc: str, value: float, low: float, high: float, units: str = "", precision: int = 3
) -> pvproperty:
    """A writable ``ao`` PV accepting finite values in ``low..high`` (DRVL..DRVH)."""
    return pvproperty(
        value=float(value),
        name=name,
        doc=doc,
        units=units,
        precision=precision,
        dtype=NumericSetpoint,
        record="ao",
        lower_ctrl_limit=low,
        upper_ctrl_limit=high,
        lower_disp_limit=low,
        upper_disp_limit=high,
    )


def enum_setpoint(name: str, doc: str, states: list[str], value: str) -> pvproperty:
    """A writable ``mbbo``-like enum PV accepting only ``states``."""
    return pvproperty(
        value=value, name=name, doc=doc, dtype=EnumSetpoint, enum_strings=states, record="mbbo"
    )


def block_acknowledgement(name: str, doc: str) -> pvproperty:
    """A writable LONG PV for a consumer's acknowledgement (:class:`BlockAcknowledgement`);
    -2 until the first consumer writes."""
    return pvproperty(value=NO_CONSUMER, name=name, doc=doc, dtype=BlockAcknowledgement)


class EnumReadback(PvpropertyEnumRO):
    """Read-only enum (``mbbi``); its fields (state strings .ZRST...) follow the writers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _guard_fields(self)


def enum_readback(name: str, doc: str, states: list[str], value: str) -> pvproperty:
    """A read-only enum PV."""
    return pvproperty(
        value=value,
        name=name,
        doc=doc,
        dtype=EnumReadback,
        enum_strings=states,
        record="mbbi",
        read_only=True,
    )
