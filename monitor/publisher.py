"""The monitor's result PVs (``{prefix}MON:...``), served by caproto in a background thread.

Any EPICS tool sees the running result here.  Values are written from the monitor's
worker thread through :meth:`ResultPublisher.publish`, which hands them to the server's
event loop (caproto objects are only touched inside that loop).  An undefined result
(NaN: nothing analysed yet, a spin state without counts, fewer than two miniruns for
chi2/ndf) is published as NaN with severity INVALID and status UDF, never as a number;
each of these PVs has its own caproto alarm instance (``alarm_group``), so one undefined
value does not mark the others.

The beam (``{prefix}MON:BEAM:...``, :func:`beam_group`): per beam variable V (X, Y, XP,
YP, DPP) its helicity-correlated difference ``BEAM:V:DIFF``, ``:ERR`` and ``:WIDTH`` in
the unit a shift reads (nm, nrad, ppb: the EGU field), and the slopes of every detector
channel's measured asymmetry on it, then the combined one's, as arrays ``BEAM:V:SLOPES``
and ``:SLOPES:ERR`` (fraction per mm, mrad or unit dp/p; the channel order of
``BEAM:SLOPE_CHANNELS``); the regressed asymmetry ``ASYM:REG``, ``:ERR``, ``:CHI2_NDF`` and
``ASYM:REG:SHIFT``, the correction ``(raw - regressed) / raw error``; ``BEAM:CUT``, the
patterns cut for a monitor beyond its range.  Beam modulation: the dithering-corrected
asymmetry ``ASYM:DIT`` and ``:ERR``, the cycles fitted ``DIT:CYCLES``, the patterns cut for
them ``DIT:PATTERNS_CUT`` and the dead coils of the latest complete cycle ``DIT:DEAD_COILS``.
The polarimeter (NaN/INVALID without one): the run's measured polarization per spin state
``POL:PLUS``, ``POL:MINUS`` (signed), the effective one that divides the asymmetries
``POL:EFF``, each with ``:ERR``, and the flip quality ``|P+| - |P-|`` ``POL:FLIP``, ``:ERR``
and ``POL:FLIP:SIGMA`` (of the minirun filling, what the alarm reads).

With ``pva=True`` every PV served here (the alarm PVs of ``extra_groups`` too) is also served
over pvAccess under the same name, from the same writes (:mod:`mupnc.monitor.pva`), with the
per-minirun table ``MON:MINIRUNS`` beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading

from caproto import AlarmSeverity, AlarmStatus, ChannelType
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty

from mupnc.daq.beamline import BEAM_VARIABLES, DISPLAY, UNITS
from mupnc.daq.record_fields import RecordGroup
from mupnc.monitor.analysis.modulation import latest_complete_cycle
from mupnc.monitor.analysis.results import COMBINED, COUNTING, INTEGRATING, RunResult
from mupnc.monitor.decoding.stream import ERROR_KINDS, LOCK_STATES
from mupnc.monitor.feedback.pvs import feedback_pv_group, write_feedback_pvs
from mupnc.monitor.feedback.service import FeedbackRequests, FeedbackService

ESTIMATORS = [INTEGRATING.upper(), COUNTING.upper()]

_UNDEFINED = {"status": AlarmStatus.UDF, "severity": AlarmSeverity.INVALID_ALARM}
_DEFINED = {"status": AlarmStatus.NO_ALARM, "severity": AlarmSeverity.NO_ALARM}


class ResultGroup(RecordGroup):
    asym = pvproperty(
        value=math.nan,
        name="ASYM",
        alarm_group="ASYM",
        read_only=True,
        precision=8,
        doc="Running combined physics asymmetry\nRunning combined physics asymmetry (fraction)",
    )
    asym_err = pvproperty(
        value=math.nan,
        name="ASYM:ERR",
        alarm_group="ASYM:ERR",
        read_only=True,
        precision=8,
        doc="Statistical error of ASYM",
    )
    chi2_ndf = pvproperty(
        value=math.nan,
        name="CHI2_NDF",
        alarm_group="CHI2_NDF",
        read_only=True,
        precision=3,
        doc="chi2/ndf of minirun means",
    )
    charge_asym = pvproperty(
        value=math.nan,
        name="CHARGE_ASYM",
        alarm_group="CHARGE_ASYM",
        read_only=True,
        precision=8,
        doc="Beam charge asymmetry (fraction)",
    )
    estimator = pvproperty(
        value=ESTIMATORS[0],
        enum_strings=ESTIMATORS,
        dtype=ChannelType.ENUM,
        name="ESTIMATOR",
        read_only=True,
        doc=(
            "Estimator of ASYM\n"
            "Estimator of ASYM: per-pattern (integrating) or summed counts (counting)"
        ),
    )
    decoder = pvproperty(
        value=LOCK_STATES[1],
        enum_strings=list(LOCK_STATES),
        dtype=ChannelType.ENUM,
        name="DECODER",
        read_only=True,
        doc="Helicity decoder state\nHelicity decoder: LOCKED, LEARNING or UNLOCKED",
    )
    windows_held = pvproperty(
        value=0, name="WINDOWS_HELD", read_only=True, doc="Windows waiting for their helicity"
    )
    patterns = pvproperty(value=0, name="PATTERNS", read_only=True, doc="Good patterns")
    windows = pvproperty(value=0, name="WINDOWS", read_only=True, doc="Windows decoded")
    lost_windows = pvproperty(
        value=0, name="LOST_WINDOWS", read_only=True, doc="Windows never received"
    )
    run = pvproperty(value=0, name="RUN", read_only=True, doc="Run number being monitored")
    helicity_errors = pvproperty(
        value=[0] * len(ERROR_KINDS),
        name="HEL_ERRORS",
        max_length=len(ERROR_KINDS),
        read_only=True,
        doc="Helicity error counts by kind\nHelicity error counts: " + ", ".join(ERROR_KINDS),
    )


MAX_SLOPE_CHANNELS = 1024
"""Channels (and the combined asymmetry) the slope arrays hold at most."""
SLOPE_NAME_CHARS = 8192
"""Characters of ``BEAM:SLOPE_CHANNELS`` (MOLLER's 512 names of 8 characters take 4.6 k)."""


def _scalar(name: str, doc: str, units: str = "", precision: int = 8) -> pvproperty:
    return pvproperty(
        value=math.nan,
        name=name,
        alarm_group=name,
        read_only=True,
        precision=precision,
        units=units,
        doc=doc,
    )


def _array(name: str, doc: str) -> pvproperty:
    return pvproperty(
        value=[math.nan],
        name=name,
        max_length=MAX_SLOPE_CHANNELS,
        read_only=True,
        doc=doc,
    )


POLARIZATION_PVS = {
    "PLUS": "Measured polarization, helicity +1 state",
    "MINUS": "Measured polarization, helicity -1 state",
    "EFF": "Measured effective polarization",
    "FLIP": "Flip quality |P+| - |P-|",
}
"""``POL:<KEY>`` (and ``:ERR``) -> description (at most 40 characters: the DESC field)."""


def beam_group(prefix: str) -> PVGroup:
    """The beam and regression PVs (module docstring) under ``{prefix}MON:``."""
    attrs = {
        "asym_reg": _scalar(
            "ASYM:REG",
            "Regressed combined asymmetry\nRegressed combined physics asymmetry (fraction)",
        ),
        "asym_reg_err": _scalar("ASYM:REG:ERR", "Statistical error of ASYM:REG"),
        "asym_reg_chi2_ndf": _scalar(
            "ASYM:REG:CHI2_NDF",
            "chi2/ndf of regressed minirun values\nchi2/ndf of the miniruns' regressed values",
            precision=3,
        ),
        "asym_reg_shift": _scalar(
            "ASYM:REG:SHIFT",
            (
                "Regression correction in raw errors\n"
                "Regression correction in raw errors: (raw - regressed) / error"
            ),
            units="sigma",
            precision=2,
        ),
        "beam_cut": pvproperty(
            value=0,
            name="BEAM:CUT",
            read_only=True,
            doc="Patterns cut: beam monitor out of range",
        ),
        "asym_dit": _scalar(
            "ASYM:DIT",
            "Dithering-corrected asymmetry\nDithering-corrected combined physics asymmetry",
        ),
        "asym_dit_err": _scalar("ASYM:DIT:ERR", "Statistical error of ASYM:DIT"),
        "dit_cycles": pvproperty(
            value=0, name="DIT:CYCLES", read_only=True, doc="Beam-modulation cycles fitted"
        ),
        "dit_patterns_cut": pvproperty(
            value=0,
            name="DIT:PATTERNS_CUT",
            read_only=True,
            doc=(
                "Patterns cut: in a modulation cycle\n"
                "Patterns cut from the asymmetry: in a modulation cycle"
            ),
        ),
        "dit_dead_coils": pvproperty(
            value="",
            name="DIT:DEAD_COILS",
            dtype=ChannelType.CHAR,
            max_length=SLOPE_NAME_CHARS,
            read_only=True,
            doc=(
                "Dead coils of the latest cycle\n"
                "Coils of the latest complete cycle that did not move the beam (comma-separated)"
            ),
        ),
        **{
            f"pol_{key.lower()}{suffix}": _scalar(
                f"POL:{key}{':ERR' if suffix else ''}",
                f"Error of POL:{key}" if suffix else what,
                precision=5,
            )
            for key, what in POLARIZATION_PVS.items()
            for suffix in ("", "_err")
        },
        "pol_flip_sigma": _scalar(
            "POL:FLIP:SIGMA",
            "Flip quality of the minirun filling\nFlip quality of the minirun filling, in errors",
            "sigma",
            2,
        ),
        "slope_channels": pvproperty(
            value="",
            name="BEAM:SLOPE_CHANNELS",
            dtype=ChannelType.CHAR,
            max_length=SLOPE_NAME_CHARS,
            read_only=True,
            doc=(
                "Channel names of the slope arrays\n"
                "Channel names of the slope arrays, comma-separated (combined last)"
            ),
        ),
    }
    for variable in BEAM_VARIABLES:
        key, unit = variable.upper(), DISPLAY[variable][0]
        per = UNITS[variable] or "unit dp/p"
        attrs[f"{variable}_diff"] = _scalar(
            f"BEAM:{key}:DIFF", f"Helicity-correlated difference of {variable}", unit, 2
        )
        attrs[f"{variable}_diff_err"] = _scalar(
            f"BEAM:{key}:DIFF:ERR", f"Error of BEAM:{key}:DIFF", unit, 2
        )
        attrs[f"{variable}_diff_width"] = _scalar(
            f"BEAM:{key}:DIFF:WIDTH",
            (
                f"RMS of pattern differences of {variable}\n"
                f"RMS of the per-pattern differences of {variable}"
            ),
            unit,
            2,
        )
        attrs[f"{variable}_slopes"] = _array(
            f"BEAM:{key}:SLOPES",
            f"Asymmetry slopes on {variable}\nAsymmetry slopes on {variable} (fraction per {per})",
        )
        attrs[f"{variable}_slopes_err"] = _array(
            f"BEAM:{key}:SLOPES:ERR", f"Errors of BEAM:{key}:SLOPES"
        )
    return type("BeamGroup", (RecordGroup,), attrs)(prefix=prefix + "MON:")


def beam_values(result: RunResult, channels: list[str]) -> dict:
    """The :func:`beam_group` values of a run result (``channels``: detector names)."""
    values: dict = {"beam_cut": result.patterns_beam_cut}
    latest = latest_complete_cycle(result.dither_cycles)
    values.update(
        dit_cycles=len(result.dither_cycles),
        dit_patterns_cut=result.patterns_modulation,
        dit_dead_coils=",".join(latest.dead_coils) if latest is not None else "",
    )
    if result.dithered is not None:
        values.update(asym_dit=result.dithered.value, asym_dit_err=result.dithered.error)
    regressed = result.regressed
    if regressed is not None:
        raw = result.combined
        shift = (raw.value - regressed.value) / raw.error if raw.error > 0 else math.nan
        values.update(
            asym_reg=regressed.value,
            asym_reg_err=regressed.error,
            asym_reg_chi2_ndf=result.regressed_chi2_ndf,
            asym_reg_shift=shift,
        )
    values.update(_polarization_values(result))
    names = [*channels, COMBINED]
    values["slope_channels"] = ",".join(names)
    for variable in BEAM_VARIABLES:
        difference = result.beam.get(variable)
        factor = DISPLAY[variable][1]
        if difference is not None:
            values[f"{variable}_diff"] = difference.value * factor
            values[f"{variable}_diff_err"] = difference.error * factor
            values[f"{variable}_diff_width"] = difference.width * factor
        slopes = [result.slopes.get((name, variable)) for name in names]
        if any(s is not None for s in slopes):
            values[f"{variable}_slopes"] = [math.nan if s is None else s.value for s in slopes]
            values[f"{variable}_slopes_err"] = [math.nan if s is None else s.error for s in slopes]
    return values


def _polarization_values(result: RunResult) -> dict[str, float]:
    """The ``POL:*`` values of a run result (none without a polarimeter: they stay NaN)."""
    p = result.polarization
    if p is None:
        return {}
    values: dict[str, float] = {}
    for key, m in (("plus", p.plus), ("minus", p.minus), ("eff", p.effective),
                   ("flip", p.flip_quality)):  # fmt: skip
        values[f"pol_{key}"], values[f"pol_{key}_err"] = m.value, m.error
    latest = result.miniruns[-1].polarization if result.miniruns else None
    values["pol_flip_sigma"] = math.nan if latest is None else latest.flip_sigma
    return values


def result_pv_groups(
    prefix: str, requests: FeedbackRequests
) -> tuple[ResultGroup, PVGroup, PVGroup]:
    """The PV groups every monitor serves under ``{prefix}MON:``: the results, the
    :func:`beam_group` and the feedback PVs (mode puts go to ``requests``); ``mupnc pvs``
    lists them."""
    return (
        ResultGroup(prefix=prefix + "MON:"),
        beam_group(prefix),
        feedback_pv_group(prefix, requests),
    )


class ResultPublisher:
    """Serves the :func:`result_pv_groups` on this process's CA server port and, with
    ``pva``, the same PVs over pvAccess (``pva_conf``: the p4p server's configuration
    instead of the ``EPICS_PVAS_*`` environment)."""

    def __init__(
        self,
        prefix: str,
        extra_groups: tuple[PVGroup, ...] = (),
        pva: bool = False,
        pva_conf: dict | None = None,
    ) -> None:
        self.feedback_requests = FeedbackRequests()
        """Mode switches put to ``MON:FB:<LOOP>:MODE``, for the worker thread."""
        self.group, self.beam, self.feedback = result_pv_groups(prefix, self.feedback_requests)
        self.extra_groups = (self.beam, self.feedback, *extra_groups)  # beside the results
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="result-pvs", daemon=True)
        self.pvdb = dict(self.group.pvdb)
        for group in self.extra_groups:
            self.pvdb.update(group.pvdb)
        self.pva = None
        self._thread.start()
        self._ready.wait(10)
        if pva:
            from mupnc.monitor.pva import PvaMirror

            shots = asyncio.run_coroutine_threadsafe(self._snapshots(), self._loop).result(5)
            self.pva = PvaMirror(prefix, self.pvdb, shots, pva_conf)

    async def _snapshots(self) -> dict:
        """Every PV's value, alarm and timestamp, read inside the server's loop."""
        from mupnc.monitor.pva import snapshot

        return {name: snapshot(channel) for name, channel in self.pvdb.items()}

    def _serve(self) -> None:
        async def run_server() -> None:
            context = Context(self.pvdb)  # caproto queues bind to the running loop
            self._loop.call_soon(self._ready.set)
            await context.run()

        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(run_server())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)

    def publish(self, **values) -> None:
        """Write PV values (keyword = an attribute of :class:`ResultGroup` or of the
        :func:`beam_group`); a float that is not finite is written as NaN with INVALID
        severity and UDF status."""

        async def write() -> None:
            for name, value in values.items():
                pv = getattr(self.group, name, None) or getattr(self.beam, name)
                if isinstance(value, float):
                    defined = math.isfinite(value)
                    alarm = _DEFINED if defined else _UNDEFINED
                    await pv.write(value if defined else math.nan, **alarm)
                elif name == "estimator":
                    await pv.write(value.upper())
                else:
                    await pv.write(value)

        self.submit(write())

    def publish_feedback(self, service: FeedbackService) -> None:
        """The feedback loops' PVs (:mod:`mupnc.monitor.feedback.pvs`)."""
        self.submit(write_feedback_pvs(self.feedback, service))

    def publish_miniruns(self, result: RunResult) -> None:
        """The per-minirun table ``MON:MINIRUNS`` (pvAccess only: nothing without it)."""
        if self.pva is not None:
            from mupnc.monitor.pva import minirun_rows

            self.pva.post_miniruns(minirun_rows(result))

    def submit(self, coroutine) -> None:
        """Run a coroutine (PV writes) in the server's loop and wait for it; over pvAccess,
        post what it changed, read in that loop right after it."""

        async def written() -> dict | None:
            await coroutine
            return await self._snapshots() if self.pva is not None else None

        shots = asyncio.run_coroutine_threadsafe(written(), self._loop).result(timeout=5)
        if self.pva is not None and shots is not None:
            self.pva.post(shots)

    def close(self) -> None:
        if self.pva is not None:
            self.pva.close()
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=5)
