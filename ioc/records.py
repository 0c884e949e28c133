"""Record-like PV classes for the IOCs: analog readbacks with HYST, validated setpoints.

caproto gives every ``record='ai'``/``'ao'`` PV the EPICS fields (DESC, EGU, HIHI/HIGH/
LOW/LOLO, HHSV/HSV/LSV/LLSV, HYST, SEVR, STAT, ...).  Two things it lacks are added here:

* :class:`AnalogReadback` evaluates its limit alarms with EPICS ``HYST`` semantics
  (:func:`ioc.limits.check_limits`), reading the limits, severities and HYST from its
  own fields, so ``caput PV.HYST 2`` works as on a real IOC.
* :class:`NumericSetpoint` and :class:`EnumSetpoint` refuse a bad put *before* it reaches
  the record (NaN, ±inf, outside DRVL..DRVH, an array where a scalar is expected, a
  string that is not a number, an enum index outside its states): the client gets
  ``ECA_PUTFAIL``, the record keeps its value and alarm state, and the refusal is logged.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from caproto import AlarmSeverity, AlarmStatus, CaprotoValueError, ChannelType
from caproto._backend import convert_values
from caproto._dbr import native_type
from caproto._utils import ConversionDirection
from caproto.server import pvproperty
from caproto.server.server import PvpropertyDouble, PvpropertyDoubleRO, PvpropertyEnum

from ioc.limits import SEVERITY_NAMES, AlarmLimits, check_limits

log = logging.getLogger("mupnc.ioc")

_ACK_TYPES = (ChannelType.PUT_ACKS, ChannelType.PUT_ACKT)


def _severity_index(field: Any) -> int:
    value = field.value
    return SEVERITY_NAMES.index(value) if isinstance(value, str) else int(value)


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
        fields.engineering_units._data["value"] = self.units
        fields.alarm_deadband._data["value"] = limits.hyst
        for name, value in (
            ("hihi_alarm_limit", limits.hihi),
            ("high_alarm_limit", limits.high),
            ("low_alarm_limit", limits.low),
            ("lolo_alarm_limit", limits.lolo),
            ("hihi_severity", SEVERITY_NAMES[limits.hhsv]),
            ("high_severity", SEVERITY_NAMES[limits.hsv]),
            ("low_severity", SEVERITY_NAMES[limits.lsv]),
            ("lolo_severity", SEVERITY_NAMES[limits.llsv]),
        ):
            getattr(fields, name)._data["value"] = value
        self._last_alarmed = math.nan

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


class _RefusesBadPuts:
    """Mixin: validate a CA put in :meth:`refuse_reason` before the record sees it."""

    def refuse_reason(self, value: Any) -> str | None:
        """Why ``value`` (already converted to this PV's type) is refused, or None."""
        raise NotImplementedError

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        if data_type not in _ACK_TYPES:
            try:
                value = convert_values(
                    values=data,
                    from_dtype=native_type(data_type),
                    to_dtype=self.data_type,
                    string_encoding=self.string_encoding,
                    enum_strings=getattr(self, "enum_strings", None),
                    direction=ConversionDirection.FROM_WIRE,
                )
            except Exception as ex:  # caproto raises several types for unconvertible data
                reason = f"cannot convert {data!r} to {self.data_type.name}: {ex}"
            else:
                reason = self.refuse_reason(value)
            if reason is not None:
                log.warning("refused put to %s: %s", self.pvname, reason)
                raise CaprotoValueError(f"{self.pvname}: {reason}")
        return await super().write_from_dbr(data, data_type, metadata, flags=flags)


class NumericSetpoint(_RefusesBadPuts, PvpropertyDouble):
    """Writable analog setpoint (``ao``); DRVL..DRVH are the control limits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.field_inst.engineering_units._data["value"] = self.units

    def refuse_reason(self, value: Any) -> str | None:
        values = np.atleast_1d(np.asarray(value, dtype=float))
        if values.size != 1:
            return f"expected one value, got {values.size}"
        v = float(values[0])
        if not math.isfinite(v):
            return f"{v} is not a finite number"
        lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
        if not lo <= v <= hi:
            return f"{v:g} is outside {lo:g}..{hi:g} {self.units}".rstrip()
        return None


class EnumSetpoint(_RefusesBadPuts, PvpropertyEnum):
    """Writable enum; only its own states (by index or by name) are accepted."""

    def refuse_reason(self, value: Any) -> str | None:
        values = list(np.atleast_1d(value))
        if len(values) != 1:
            return f"expected one state, got {len(values)} values"
        state = values[0]
        if isinstance(state, (str, bytes)):
            name = state.decode() if isinstance(state, bytes) else state
            return None if name in self.enum_strings else f"{name!r} is not a state"
        if not 0 <= int(state) < len(self.enum_strings):
            return f"state {int(state)} outside 0..{len(self.enum_strings) - 1}"
        return None


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


def enum_readback(name: str, doc: str, states: list[str], value: str) -> pvproperty:
    """A read-only enum PV."""
    return pvproperty(
        value=value,
        name=name,
        doc=doc,
        dtype=ChannelType.ENUM,
        enum_strings=states,
        record="mbbi",
        read_only=True,
    )
