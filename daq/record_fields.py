"""The EPICS record every PV of mupnc is, and the fields it tells the truth in.

Both servers (the IOC, :mod:`mupnc.ioc.server`, and the monitor's result PVs,
:mod:`mupnc.monitor.publisher`) build their PV groups on :class:`RecordGroup`; this is the
one ``daq`` module that loads caproto, because both rooms need it and neither may import
the other.  A :class:`RecordGroup` gives each of its PVs, before the group serves:

* a record type (:func:`record_type`): ``ai``/``ao`` for a double, ``longin``/``longout``
  for a long, ``mbbi``/``mbbo`` for an enum, ``stringin``/``stringout`` for a string,
  ``waveform`` for an array or a char waveform; so every PV has ``.DESC .SEVR .STAT .UDF``
  and ``.NAME .RTYP``, and ``.EGU .HOPR .LOPR`` (``.PREC`` for doubles) where its record
  has them;
* ``.DESC``: the first line of the pvproperty's doc, at most :data:`DESC_CHARS` characters
  by design (a longer doc raises :class:`DescriptionTooLongError` when the group is built; what
  follows the first line is the PV's longer meaning, :func:`meaning`, listed by ``mupnc
  pvs``);
* its own alarm (``alarm_group`` = its name, unless set), INVALID/UDF until its first
  write; ``.UDF`` 1 until then (and while a double holds NaN), 0 after;
* ``.EGU`` its units; ``.HOPR``/``.LOPR`` the display limits DBR_CTRL gives clients;
  ``.DRVH``/``.DRVL`` (``ao``/``longout``) the control limits a put must respect; an
  input record's DBR_CTRL control limits are its display limits (as EPICS's ``ai``).

Decision: these descriptive fields (``.DESC .EGU .PREC .HOPR .LOPR .DRVH .DRVL .UDF``)
are read-only over Channel Access (a put gets no write access): they describe what the
server enforces (limits come from the run's configuration, never from a client), so a put
that changed them could only make them lie.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from caproto import MAX_ENUM_STATES, AccessRights, AlarmSeverity, AlarmStatus
from caproto._data import (
    ChannelChar,
    ChannelData,
    ChannelDouble,
    ChannelEnum,
    ChannelFloat,
    ChannelInteger,
    ChannelShort,
    ChannelString,
)
from caproto.server import PVGroup
from caproto.server.server import pvspec_type_map, pvspec_type_map_read_only

DESC_CHARS = 40
"""Characters of an EPICS ``.DESC`` field (``DBR_STRING``: 40 with its terminator)."""

READ_ONLY_FIELDS = ("DESC", "EGU", "PREC", "HOPR", "LOPR", "DRVH", "DRVL", "UDF")
"""Fields that describe the server's own definition of a PV: read-only over CA."""


ALARM_STATUS = tuple(status.name for status in sorted(AlarmStatus, key=int))
"""EPICS's menuAlarmStat, NO_ALARM (0) … WRITE_ACCESS (21), as caproto's AlarmStatus has it."""


def _serve_whole_alarm_menu(stat: ChannelEnum) -> None:
    """Give a record's ``.STAT`` EPICS's whole menuAlarmStat (22 states; caproto's ends at
    SOFT, 15, so UDF, 17, could not be served): its value reads as the index (UDF = 17)
    or, as DBR_STRING, the name; DBR_GR/CTRL_ENUM carry the first 16 names, all Channel
    Access can, as from an EPICS IOC."""
    stat._data["enum_strings"] = ALARM_STATUS
    carried = [name.encode(stat.string_encoding) for name in ALARM_STATUS[:MAX_ENUM_STATES]]

    def read_metadata(dbr_metadata: Any) -> Any:
        if hasattr(dbr_metadata, "enum_strings"):
            dbr_metadata.enum_strings = carried
        return ChannelData._read_metadata(stat, dbr_metadata)

    stat._read_metadata = read_metadata  # type: ignore[method-assign]


class DescriptionTooLongError(ValueError):
    """A PV's description (first line of its doc) exceeds :data:`DESC_CHARS`."""


def description(doc: str | None) -> str:
    """The ``.DESC`` of a PV documented by ``doc``: its first line."""
    return (doc or "").strip().split("\n", 1)[0].strip()


def meaning(doc: str | None) -> str:
    """What a PV means: the lines of ``doc`` after its description joined, else the
    description itself."""
    parts = (doc or "").strip().split("\n", 1)
    rest = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return rest or description(doc)


def record_type(data_class: type, read_only: bool, max_length: int | None) -> str:
    """The EPICS record type a caproto data class is served as."""
    array = (max_length or 1) > 1
    if array or issubclass(data_class, ChannelChar):
        return "waveform"
    for kinds, records in _RECORDS:
        if issubclass(data_class, kinds):
            return records[0] if read_only else records[1]
    raise TypeError(f"no record type for {data_class.__name__}")


_RECORDS = (
    (ChannelDouble | ChannelFloat, ("ai", "ao")),
    (ChannelInteger | ChannelShort, ("longin", "longout")),
    (ChannelEnum, ("mbbi", "mbbo")),
    (ChannelString, ("stringin", "stringout")),
)
"""(data classes, (record read-only, record writable)) of a scalar."""


def _read_only(field: Any) -> None:
    check = field.check_access
    field.check_access = lambda host, user: check(host, user) & ~AccessRights.WRITE


def _set_description(channel: Any, doc: str | None) -> None:
    channel._description = description(doc)


_DESCRIPTION = property(lambda channel: channel._description, _set_description)
"""A channel's ``__doc__``, which caproto's ``.DESC`` field reads: the description only
(caproto assigns the whole doc after building the channel)."""


if TYPE_CHECKING:
    from caproto.server.server import PvpropertyData as _Channel
else:
    _Channel = object


class TruthfulRecord(_Channel):
    """Mixin for a caproto data class: the record fields of the module docstring.  A
    read-only PV starts undefined; a writable one starts with its configured value (as an
    EPICS output record with its VAL in the database)."""

    field_inst: Any
    __doc__ = _DESCRIPTION  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._has_value = not self.pvspec.read_only
        if not self._has_value:
            alarm = self.alarm._data
            alarm.update(status=AlarmStatus.UDF, severity=AlarmSeverity.INVALID_ALARM)
        if self.field_inst is None:
            return
        self.field_inst.publish = self._publish_alarm_fields
        _serve_whole_alarm_menu(self.field_inst.alarm_status)
        for pv in READ_ONLY_FIELDS:
            field = self.field_inst.pvdb.get(pv)
            if field is not None:
                _read_only(field)
        self._set_field("engineering_units", getattr(self, "units", ""))
        self.field_inst.undefined.strip_null_terminator = False  # UDF 0 is b"\x00"
        self._set_field("undefined", b"\x00" if self._has_value else b"\x01")
        self._show_limits()
        self._link_operating_range()
        if not self._has_value:
            self._set_field("current_alarm_severity", "INVALID")
            self._set_field("alarm_status", "UDF")

    async def _publish_alarm_fields(self, flags: Any) -> None:
        """caproto's record publish, with .STAT written by name (its menu is EPICS's whole
        one here, :func:`_serve_whole_alarm_menu`)."""
        fields, alarm = self.field_inst, self.alarm
        await fields.alarm_acknowledge_transient.write(alarm.must_acknowledge_transient)
        await fields.alarm_acknowledge_severity.write(alarm.severity_to_acknowledge)
        await fields.alarm_status.write(AlarmStatus(alarm.status).name)
        await fields.current_alarm_severity.write(alarm.severity)

    def _set_field(self, attr: str, value: Any) -> None:
        field = getattr(self.field_inst, attr, None)
        if field is not None:
            field._data["value"] = value

    def _show_limits(self) -> None:
        """.DRVH/.DRVL from the control limits.  .HOPR/.LOPR, which caproto links to the
        control limits, read the display limits (:meth:`_link_operating_range`)."""
        if self.field_inst is None or not hasattr(self, "upper_ctrl_limit"):
            return
        numeric: Any = self  # a numeric channel (it has the limits)
        self._set_field("drive_high_limit", numeric.upper_ctrl_limit)
        self._set_field("drive_low_limit", numeric.lower_ctrl_limit)

    def _link_operating_range(self) -> None:
        if not hasattr(self, "upper_disp_limit"):
            return
        for pv, limit in (("HOPR", "upper_disp_limit"), ("LOPR", "lower_disp_limit")):
            field = self.field_inst.pvdb.get(pv)
            if field is not None:
                field.getter = functools.partial(_display_limit, self, limit)
                field.putter = None  # caproto's would write the limit into the control limit

    def _read_metadata(self, dbr_metadata: Any) -> Any:
        """caproto's metadata; an input record's (``ai``, ``longin``) DBR_CTRL control
        limits are its display limits, as EPICS's ai and longin give them."""
        super()._read_metadata(dbr_metadata)
        if self.pvspec.read_only and hasattr(dbr_metadata, "upper_ctrl_limit"):
            dbr_metadata.upper_ctrl_limit = dbr_metadata.upper_disp_limit
            dbr_metadata.lower_ctrl_limit = dbr_metadata.lower_disp_limit

    def _undefined(self) -> bool:
        value = self.value
        return isinstance(value, float) and math.isnan(value)

    async def write(self, value: Any, *args: Any, **metadata: Any) -> None:
        """A first write without an alarm of its own clears INVALID/UDF (its value's
        limit checks, if any, still set the alarm)."""
        self._explicit_alarm = "status" in metadata or "severity" in metadata
        if not self._has_value and not self._explicit_alarm:
            metadata.update(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)
        try:
            await super().write(value, *args, **metadata)
        finally:
            self._explicit_alarm = False
        self._has_value = True
        if self.field_inst is not None:
            await self.field_inst.undefined.write(b"\x01" if self._undefined() else b"\x00")

    def _collect_alarm(self) -> dict:
        """caproto's own limit check (no limits: NO_ALARM) overrides an alarm the writer
        gave whenever it differs from the current one; the writer's wins here."""
        found = super()._collect_alarm()
        return {} if getattr(self, "_explicit_alarm", False) else found

    async def write_metadata(self, *args: Any, **metadata: Any) -> None:
        await super().write_metadata(*args, **metadata)
        self._show_limits()


async def _display_limit(channel: Any, limit: str, field: Any) -> float:
    return getattr(channel, limit)


@functools.cache
def truthful(data_class: type) -> type:
    """``data_class`` with :class:`TruthfulRecord` mixed in (itself if it has it)."""
    if issubclass(data_class, TruthfulRecord):
        return data_class
    return type(data_class.__name__, (TruthfulRecord, data_class), {"__doc__": _DESCRIPTION})


def _truthful_map(types: Mapping) -> dict:
    return {dtype: truthful(cls) for dtype, cls in types.items()}


class RecordGroup(PVGroup):
    """A PV group whose every PV is a truthful record (module docstring)."""

    type_map = _truthful_map(pvspec_type_map)
    type_map_read_only = _truthful_map(pvspec_type_map_read_only)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        make_records(type(self))
        super().__init__(*args, **kwargs)


def make_records(group_class: type[PVGroup]) -> None:
    """Give every pvproperty of ``group_class`` its record type, its own alarm and a
    truthful data class; raise :class:`DescriptionTooLongError` for a long description."""
    for prop in group_class._pvs_.values():
        spec = prop.pvspec
        desc = description(spec.doc)
        if len(desc) > DESC_CHARS:
            raise DescriptionTooLongError(f"{spec.name}: {desc!r} has {len(desc)} > {DESC_CHARS}")
        data_class = spec.get_data_class(group_class)
        updates: dict[str, Any] = {}
        if isinstance(spec.dtype, type) and issubclass(spec.dtype, ChannelData):
            updates["dtype"] = truthful(spec.dtype)
        if spec.record is None:
            updates["record"] = record_type(data_class, spec.read_only, spec.max_length)
        if spec.alarm_group is None:
            updates["alarm_group"] = spec.name
        if updates:
            prop.pvspec = spec._replace(**updates)
