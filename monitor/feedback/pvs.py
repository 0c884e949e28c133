"""The feedback PVs the monitor serves beside its results (``{prefix}MON:FB:...``).

Per loop L (``CHARGE``, ``POSITION``):

* ``MON:FB:L:MODE`` (enum OFF, DRY_RUN, ON; writable): the loop's mode; a put switches the
  loop at the monitor's next flush (``mupnc feedback L MODE`` writes it);
* ``MON:FB:L:ACTIONS``: setpoint changes applied so far in the run;
* ``MON:FB:L:STATE``: the last decision, in words (why it acted or not).

Per actuator A (``CHARGE``, ``X``, ``Y``): ``MON:FB:A:INPUT`` and ``:INPUT:ERR`` (the last
decision's input: charge asymmetry in ppm, position difference in um) and
``MON:FB:A:SETPOINT`` (the setpoint the loop last wrote, ppm or um).
"""

from __future__ import annotations

import math

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from mupnc.daq.record_fields import RecordGroup
from mupnc.monitor.feedback.loop import INPUT_UNITS, LOOP_ACTUATORS, LOOPS, MODES, SETPOINT_UNITS
from mupnc.monitor.feedback.service import FeedbackRequests, FeedbackService

PV_MODES = [m.upper() for m in MODES]


def _mode(loop: str, requests: FeedbackRequests) -> pvproperty:
    prop = pvproperty(
        value="OFF",
        name=f"FB:{loop.upper()}:MODE",
        dtype=ChannelType.ENUM,
        enum_strings=PV_MODES,
        doc=(
            f"Feedback loop {loop} mode\n"
            f"Feedback loop {loop}: OFF, DRY_RUN (decide, do not write) or ON"
        ),
    )

    @prop.putter
    async def prop(group, instance, value):  # caproto's thread: hand it to the worker
        requests.ask(loop, str(value).lower())
        return value

    return prop


def feedback_pv_group(prefix: str, requests: FeedbackRequests) -> PVGroup:
    """The feedback PVs (module docstring) under ``{prefix}MON:``; mode puts go to
    ``requests``."""
    attrs: dict[str, pvproperty] = {}
    for loop in LOOPS:
        attrs[f"{loop}_mode"] = _mode(loop, requests)
        attrs[f"{loop}_actions"] = pvproperty(
            value=0, name=f"FB:{loop.upper()}:ACTIONS", read_only=True,
            doc=(
f"Setpoint changes of the {loop} loop\n"
f"Setpoint changes the {loop} loop applied in this run"
),
        )  # fmt: skip
        attrs[f"{loop}_state"] = pvproperty(
            value="", name=f"FB:{loop.upper()}:STATE", dtype=ChannelType.STRING,
            max_length=200, read_only=True, doc=f"The {loop} loop's last decision",
        )  # fmt: skip
        for actuator in LOOP_ACTUATORS[loop]:
            name, unit = actuator.upper(), INPUT_UNITS[loop]
            for attr, pv, doc, units in (
                ("input", f"FB:{name}:INPUT", f"Input of the {actuator} feedback", unit),
                ("input_err", f"FB:{name}:INPUT:ERR", "Error of its input", unit),
                ("setpoint", f"FB:{name}:SETPOINT", "Setpoint it last wrote",
                 SETPOINT_UNITS[actuator]),
            ):  # fmt: skip
                attrs[f"{actuator}_{attr}"] = pvproperty(
                    value=math.nan, name=pv, units=units, precision=4, read_only=True, doc=doc
                )
    return type("FeedbackGroup", (RecordGroup,), attrs)(prefix=prefix + "MON:")


async def write_feedback_pvs(group: PVGroup, service: FeedbackService) -> None:
    """The loops' modes, counts, last decisions and setpoints (in the server's loop)."""
    for name, loop in service.loops.items():
        mode = getattr(group, f"{name}_mode")
        if mode.value != loop.settings.mode.upper():
            await mode.write(loop.settings.mode.upper(), verify_value=False)
        await getattr(group, f"{name}_actions").write(loop.actions)
        last = service.last[name]
        if last:
            await getattr(group, f"{name}_state").write(last[-1].reason[:199])
        for action in last:
            await getattr(group, f"{action.actuator}_input").write(action.value)
            await getattr(group, f"{action.actuator}_input_err").write(action.error)
        for actuator, setpoint in loop.setpoints.items():
            await getattr(group, f"{actuator}_setpoint").write(setpoint)
