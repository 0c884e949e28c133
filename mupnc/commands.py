"""Implementations of the ``mupnc`` subcommands (thin: they wire the packages together)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
from pathlib import Path

from mupnc.attach import pva_wanted, require_own_ca_port
from mupnc.daq.beamline import DISPLAY
from mupnc.db.migrate import head_revision
from mupnc.db.session import (
    create_schema,
    make_engine,
    redacted,
    require_schema,
    transaction,
)
from mupnc.db.summary import run_list, run_summary
from mupnc.epics_env import port_free
from mupnc.errors import UsageError
from mupnc.orchestrate import PARENT_ENV
from mupnc.runs import new_run, run_config, run_feedback, source_config
from mupnc.sim.source import SourceConfig

log = logging.getLogger("mupnc")


def _engine(url: str):
    engine = make_engine(url)
    require_schema(engine)
    return engine


def db_upgrade(url: str) -> int:
    create_schema(make_engine(url))
    print(f"schema at revision {head_revision()} (up to date) in {redacted(url)}")
    return 0


def ioc(args: argparse.Namespace) -> int:
    from mupnc.ioc.main import quiet_caproto_notes, serve
    from mupnc.ioc.server import GROUPS, build_ioc

    quiet_caproto_notes()
    if args.source is not None:
        from mupnc.replay import replay_ioc

        require_own_ca_port("IOC")
        return replay_ioc(args)
    config = source_config(args)
    groups = GROUPS if args.group == "all" else (args.group,)
    if args.list_pvs:
        from mupnc.pv_list import IOC, format_lines, ioc_channels, pv_lines

        pvdb = ioc_channels(args.prefix, config, args.block_rate, groups)
        print("\n".join(format_lines(pv_lines({IOC: pvdb}), with_server=False)))
        return 0
    ca_port = require_own_ca_port("IOC")  # after the configuration's own errors, which say more
    autosave = _autosaved_run(args, config) if args.autosave else None
    run = autosave[1].run if autosave else args.run
    if run is None:
        run = _new_ioc_run(args, config)
    group = build_ioc(
        args.prefix, config, run, args.block_rate, groups, blind_box=args.blind, autosave=autosave
    )
    log.info("IOC serving run %d with prefix %s on CA port %d", run, args.prefix, ca_port)
    asyncio.run(serve(group))
    return 0


def _new_ioc_run(args: argparse.Namespace, config: SourceConfig) -> int:
    blinded = args.blind is not None
    feedback = run_feedback(args, config)
    return new_run(
        args.db, config, create=False, blinded=blinded, blind_box=args.blind, feedback=feedback
    )


def _autosaved_run(args: argparse.Namespace, config: SourceConfig):
    """(file, snapshot) for ``--autosave FILE``: the open run saved there, continued, or a
    new run (``--run`` or allocated) if the file holds none."""
    from mupnc.ioc.autosave import AutosaveError, RunSnapshot, load, settings_conflict

    path = Path(args.autosave)
    settings = run_config(config, args.blind is not None, args.blind)
    saved = load(path)
    if saved is not None and not saved.ended:
        conflict = settings_conflict(saved.settings, settings)
        if conflict:
            raise AutosaveError(
                f"autosave file {path} holds open run {saved.run} with other settings "
                f"({conflict}); give the run's settings, or remove the file for a new run"
            )
        if args.run is not None and args.run != saved.run:
            raise AutosaveError(f"autosave file {path} holds open run {saved.run}, not {args.run}")
        saved.incarnation += 1
        return path, saved
    if not os.access(path.parent, os.W_OK):  # before a run is allocated for nothing
        raise AutosaveError(f"autosave file {path}: cannot write in {path.parent}")
    run = args.run if args.run is not None else _new_ioc_run(args, config)
    snapshot = RunSnapshot(run=run, settings=settings, first_seq=0, epoch=math.nan, next_seq=0)
    snapshot.save(path)
    return path, snapshot


def pvs(args: argparse.Namespace) -> int:
    """``mupnc pvs``: every PV of the IOC and of the monitor, numbered families folded
    (:mod:`mupnc.pv_list`)."""
    from mupnc.ioc.server import GROUPS
    from mupnc.monitor.alarms.rules import load_rules
    from mupnc.pv_list import (
        IOC,
        MONITOR,
        format_lines,
        ioc_channels,
        markdown_table,
        monitor_channels,
        pv_lines,
        pva_only_lines,
    )

    servers = {
        IOC: ioc_channels(args.prefix, source_config(args), args.block_rate, GROUPS),
        MONITOR: monitor_channels(args.prefix, load_rules(args.alarm_rules)),
    }
    lines = pv_lines(servers) + pva_only_lines(args.prefix)
    formatted = markdown_table(lines) if args.markdown else format_lines(lines, with_server=True)
    print("\n".join(formatted))
    return 0


def monitor(args: argparse.Namespace) -> int:
    """``mupnc monitor``: one run of the IOC, until the IOC ends it or a signal stops it
    (:mod:`mupnc.signals`); refused if another live monitor holds the run."""
    from mupnc.monitor.alarms.pvs import alarm_pv_group
    from mupnc.monitor.alarms.rules import load_rules
    from mupnc.monitor.alarms.service import AlarmService
    from mupnc.monitor.memory import return_freed_memory
    from mupnc.monitor.publisher import ResultPublisher
    from mupnc.monitor.service import OnlineMonitor
    from mupnc.signals import stop_on_signals

    return_freed_memory()
    pva = pva_wanted(args.pva)
    rules = load_rules(args.alarm_rules)
    engine = _engine(args.db)
    ca_port = require_own_ca_port("monitor")  # after the configuration's own errors, which say more
    log.info("monitor: result PVs over Channel Access on port %d", ca_port)
    stop = stop_on_signals()

    def outputs() -> tuple[ResultPublisher, AlarmService]:
        alarm_pvs = alarm_pv_group(args.prefix, [rule.name for rule in rules.rules])
        publisher = ResultPublisher(args.prefix, extra_groups=(alarm_pvs,), pva=pva)
        return publisher, AlarmService(args.prefix, engine, rules, publisher, alarm_pvs)

    OnlineMonitor(args.prefix, engine, args.minirun, outputs=outputs).run(stop)
    return 0


def feedback(args: argparse.Namespace) -> int:
    """``mupnc feedback LOOP MODE``: put the mode to the running monitor's
    ``MON:FB:<LOOP>:MODE`` PV and wait until the monitor shows it (its next flush)."""
    import time

    import epics

    name = f"{args.prefix}MON:FB:{args.loop.upper()}:MODE"
    mode = args.mode.replace("-", "_").upper()
    if epics.caput(name, mode, wait=True, timeout=5) is None:
        raise UsageError(
            f"no monitor answers at {name}: is `mupnc monitor --prefix {args.prefix}` running?"
        )
    deadline = time.monotonic() + 10
    while epics.caget(name, as_string=True, use_monitor=False, timeout=2) != mode:
        if time.monotonic() > deadline:
            raise UsageError(f"{name}: the monitor did not take {mode} within 10 s")
        time.sleep(0.2)
    print(f"feedback {args.loop}: {args.mode}")
    return 0


def alarms(args: argparse.Namespace) -> int:
    """``mupnc alarms``: list (JSON shape: docs/reference.md, 'JSON for scripts'; by default the
    newest run's alarms needing attention and those of no run), acknowledge, shelve."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from mupnc.db import alarms as store
    from mupnc.db.models import Run

    now = datetime.now(UTC)
    engine = _engine(args.db)
    if args.action == "ack":
        with transaction(engine) as session:
            store.ensure_exist(session, args.ids)
            count = store.acknowledge(session, args.ids, args.who, now)
        print(f"acknowledged {count} alarm(s)" + ("" if count else " (all were already)"))
        return 0
    if args.action == "shelve":
        with transaction(engine) as session:
            until = store.shelve(session, args.ids[0], args.seconds, args.who, now)
        print(f"alarm {args.ids[0]} shelved until {until.isoformat(timespec='seconds')}")
        return 0
    with transaction(engine) as session:
        newest = session.scalar(select(func.max(Run.number)))
        current = args.run is None and not args.all and newest is not None
        if current:  # the newest run's alarms and those of no run
            listed = store.alarm_list(session, newest, runless=True)
            elsewhere = store.open_elsewhere(session, newest)
        else:
            listed, elsewhere = store.alarm_list(session, args.run, closed=args.all), {}
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    if current:
        print(f"run {newest} (the newest) and alarms of no run:")
    if not listed:
        print("no alarms" + ("" if args.all else " need attention"))
    for a in listed:
        ack = "acknowledged" if a["acknowledged"] else "NOT ACKNOWLEDGED"
        print(
            f"{a['id']:>5}  {a['severity']:<8} {a['state']:<8} {ack:<16} "
            f"{a['since'][:19]}  run {a['run']}  {a['name']}: {a['message']}"
        )
    for run, count in sorted(elsewhere.items()):
        print(f"also open: {count} alarm(s) of run {run} (mupnc alarms --run {run})")
    return 0


def dashboard(args: argparse.Namespace) -> int:
    from mupnc.dashboards.server import serve

    _engine(args.db)
    if not port_free(args.port, args.address):  # before printing an address nobody serves
        raise UsageError(f"--port {args.port}: in use on {args.address} (another dashboard?)")
    origins = [f"127.0.0.1:{args.port}", f"localhost:{args.port}"]
    origins += args.allow_websocket_origin or []
    if PARENT_ENV not in os.environ:  # a demo or replay prints the address itself
        print(f"dashboard: http://{args.address}:{args.port}/", flush=True)
    follow = None if args.no_follow else args.follow
    serve(
        args.db,
        port=args.port,
        address=args.address,
        allow_websocket_origin=origins,
        follow=follow,
    )
    return 0


def list_runs(url: str, as_json: bool) -> int:
    """``mupnc runs``: every run; an open run whose monitor is gone is flagged, with the
    command that ends it."""
    from datetime import UTC, datetime

    with transaction(_engine(url)) as session:
        runs = run_list(session, datetime.now(UTC))
    if as_json:
        print(json.dumps(runs, indent=2))
        return 0
    print(f"{'run':>5}  {'state':8}  {'source':6}  {'mode':4}  {'windows':>10}  start")
    stuck = []
    for r in runs:
        replay = f"  (replay of {r['replay_of']})" if r["replay_of"] is not None else ""
        note = ""
        if r["monitor"] == "gone":
            note, stuck = "  NO MONITOR", [*stuck, r["run"]]
        elif r["state"] == "aborted" and r["end_reason"]:
            note = f"  ({r['end_reason']})"
        print(
            f"{r['run']:>5}  {r['state']:8}  {r['source']:6}  {r['mode']:4}  "
            f"{r['windows']:>10}  {r['start']}{replay}{note}"
        )
    for run in stuck:
        print(f"run {run} is open but no monitor is alive: 'mupnc run close {run}' ends it")
    return 0


def register_run(args: argparse.Namespace) -> int:
    """``mupnc run new``: register a run for an outside DAQ IOC, which serves the number
    printed as ``RUN:NUMBER`` (``docs/daq-contract.md``)."""
    from mupnc.runs import outside_run

    print(outside_run(args.db, args.config, args.mode, args.channel_map))
    return 0


def close_run(url: str, number: int, reason: str | None, who: str) -> int:
    """``mupnc run close RUN``: end an open run whose processes are gone (``aborted``, with
    the reason and who closed it); refused while a monitor holds the run."""
    from datetime import UTC, datetime

    from mupnc.db.lease import end_run, holder_text, monitor_alive
    from mupnc.db.models import Run
    from mupnc.errors import UsageError

    now = datetime.now(UTC)
    with transaction(_engine(url)) as session:
        run = session.get(Run, number)
        if run is None:
            raise LookupError(f"run {number} is not in the database")
        if monitor_alive(run, now):
            raise UsageError(
                f"run {number} is monitored by {holder_text(run, now)}: stop that monitor "
                "(Ctrl-C), which ends the run"
            )
        text = f"closed by {who}" + (f": {reason}" if reason else "")
        if not end_run(session, number, "aborted", text, now):
            raise UsageError(
                f"run {number} is {run.state} already ({run.end_reason or 'no reason'})"
            )
    print(f"run {number} aborted ({text})")
    return 0


def report(url: str, number: int) -> dict:
    """The prompt summary of a run as a JSON-ready dict (shape: docs/reference.md, 'JSON for
    scripts')."""
    from mupnc.planner import beside_the_planner

    with transaction(_engine(url)) as session:
        return beside_the_planner(run_summary(session, number))


def _ppm(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e6:+.1f}"


def format_reanalysis(s: dict) -> str:
    """:func:`format_report` with the settings of the reanalysis."""
    r = s["reanalysis"]
    cut = r["min_beam_rate"]
    settings = f"  reanalysed: {r['minirun_patterns']} patterns per minirun" + (
        ", unblinded" if r["unblinded"] else ""
    )
    if cut is not None:
        settings += f", low-beam cut < {cut:.3g} muons/s: {r['patterns_cut']['low_beam']} patterns"
    regress = r["regress"]
    if regress is not None:
        settings += f", regressed on {', '.join(regress) or 'nothing'}"
    return format_report(s) + "\n" + settings


def format_report(s: dict) -> str:
    a = s["asymmetry"]
    good = s["patterns_good_percent"]
    lines = [
        f"Run {s['run']} ({s['mode'].upper()}, {s['source']}, {s['state']})"
        + ("  BLINDED" if s["blinded"] else ""),
        f"  windows {s['windows']}, lost {s['lost_windows']}, good patterns {s['patterns_good']}"
        + (f" ({good:.1f} % of windows)" if good is not None else "")
        + f", miniruns {s['miniruns']}",
        f"  asymmetry {_ppm(a['value'])} +- {_ppm(a['error']).lstrip('+')} ppm"
        + (f", chi2/ndf {a['chi2_ndf']:.2f}" if a["chi2_ndf"] is not None else "")
        + (f" ({a['estimator']} estimator)" if a.get("estimator") else ""),
    ]
    nulls = s.get("null_asymmetries") or {}
    if nulls:
        lines.append(
            "  null asymmetries (ppm, 0 if the reversal is clean): "
            + ", ".join(
                f"{name} {_ppm(n['value'])} +- {_ppm(n['error']).lstrip('+')}"
                for name, n in nulls.items()
            )
        )
    lines += _beam_lines(s)
    for loop, f in (s.get("feedback") or {}).items():
        setpoint = f["last_setpoint"]
        if isinstance(setpoint, dict):
            shown = ", ".join(f"{a} {v:+.3g} um" for a, v in setpoint.items())
        else:
            shown = "none" if setpoint is None else f"{setpoint:+.4g} ppm"
        lines.append(
            f"  feedback {loop}: {f['mode']}, {f['actions']} actions in {f['decisions']}"
            f" decisions, setpoint {shown}" + (", SATURATED at its clamp" if f["saturated"] else "")
        )
    if s["charge_asymmetry"]:
        q = s["charge_asymmetry"]
        lines.append(f"  charge asymmetry {_ppm(q['value'])} +- {_ppm(q['error']).lstrip('+')} ppm")
    lines.append("  channels (ppm):")
    lines += [
        f"    {c['name']:<16} {_ppm(c['value'])} +- {_ppm(c['error']).lstrip('+')}"
        for c in s["channels"]
    ]
    e = s.get("efficiency")
    if e and e["measured"] is not None:
        ratio = e["measured_over_planner"]
        factor = f"{ratio:.3g} x longer" if ratio >= 1 else f"{1 / ratio:.3g} x less time"
        lines.append(
            f"  efficiency {e['measured']:.3g} signal counts per muon (channel map"
            f" {e['channel_map']:.3g}); mupnc plan assumes {e['planner']:.3g}: the same"
            f" sigma takes {factor} there"
        )
    errs = ", ".join(f"{k} {v}" for k, v in s["helicity_errors"].items())
    lines.append(f"  helicity errors: {errs or 'none'}")
    lines.append(f"  alarms raised: {len(s['alarms']) or 'none'}")
    lines += [
        f"    {x['since']}  {x['peak_severity'] or x['severity']:<8} {x['name']}: "
        + (x["tripped"] or x["message"])
        + ("" if x["acknowledged"] else "  (not acknowledged)")
        for x in s["alarms"]
    ]
    return "\n".join(lines)


def _beam_lines(s: dict) -> list[str]:
    """The regressed asymmetry, the size of its correction and the beam differences."""
    lines = []
    a, r = s["asymmetry"], s.get("regressed")
    if r and r["value"] is not None:
        shift = ""
        if a["value"] is not None and a["error"]:
            shift = f", correction {(a['value'] - r['value']) / a['error']:+.1f} sigma of the raw"
        lines.append(
            f"  regressed {_ppm(r['value'])} +- {_ppm(r['error']).lstrip('+')} ppm"
            + (f", chi2/ndf {r['chi2_ndf']:.2f}" if r["chi2_ndf"] is not None else "")
            + shift
        )
    elif r:
        lines.append("  regressed: undefined (no minirun could be regressed)")
    if s.get("miniruns_not_regressed"):
        lines.append(f"  miniruns not regressed: {s['miniruns_not_regressed']}")
    d = s.get("dithered")
    if d is not None or s.get("patterns_modulation"):
        shown = (
            "undefined (no usable modulation cycle)"
            if d is None or d["value"] is None
            else f"{_ppm(d['value'])} +- {_ppm(d['error']).lstrip('+')} ppm"
        )
        lines.append(
            f"  dithered {shown} ({s.get('patterns_modulation', 0)} patterns in modulation"
            " cycles, cut from the asymmetry)"
        )
    if s.get("beam"):
        parts = []
        for name, d in s["beam"].items():
            unit, factor = DISPLAY[name]
            if d["diff"] is None or d["error"] is None:
                parts.append(f"{name} n/a")
            else:
                diff, error = d["diff"] * factor, d["error"] * factor
                parts.append(f"{name} {diff:+.1f} +- {error:.1f} {unit}")
        lines.append("  beam differences: " + ", ".join(parts))
    if s.get("patterns_beam_cut"):
        lines.append(f"  patterns cut for a beam monitor out of range: {s['patterns_beam_cut']}")
    return lines + _polarization_lines(s.get("polarization"))


def _measured(m: dict, digits: int = 4) -> str:
    if m["value"] is None or m["error"] is None:
        return "undefined"
    return f"{m['value']:+.{digits}f} +- {m['error']:.{digits}f}"


def _polarization_lines(p: dict | None) -> list[str]:
    """The measured polarization per spin state, the effective one the asymmetries are
    divided by, the flip quality and the asymmetry with the configured polarization."""
    if p is None:
        return []
    sigma = p["flip_quality_sigma"]
    configured = p["asymmetry_configured_polarization"]
    return [
        f"  polarization (measured, divides the asymmetries): effective "
        f"{_measured(p['effective'])}; P+ {_measured(p['plus'])}, P- {_measured(p['minus'])}",
        f"  flip quality |P+| - |P-| {_measured(p['flip_quality'])}"
        + ("" if sigma is None else f" ({sigma:+.1f} sigma)"),
        "  with the configured polarization instead: "
        + (
            "undefined"
            if configured["value"] is None
            else f"{_ppm(configured['value'])} +- {_ppm(configured['error']).lstrip('+')} ppm"
        ),
    ]


def plan(args: argparse.Namespace) -> int:
    """``mupnc plan``: events and running time for a target significance
    (:mod:`mupnc.planner`)."""
    from mupnc.errors import UsageError
    from mupnc.planner import PlanError
    from mupnc.planner import plan as sensitivity

    try:
        result = sensitivity(
            args.mode,
            flux=args.flux,
            asymmetry=args.asymmetry,
            sigma=args.sigma,
            z=args.z,
            q2=args.q2,
            polarization=args.polarization,
            signal_fraction=args.signal_fraction,
            efficiency=args.efficiency,
        )
    except PlanError as err:
        raise UsageError(str(err)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    target = f"Z = {result.z}" if result.mode == "afb" else f"Q^2 = {result.q2:g} GeV^2"
    chain = " x ".join(f"{k} {v:g}" for k, v in result.efficiency_chain.items())
    print(
        f"{result.mode.upper()} ({target}): A = {result.asymmetry:g} at {result.sigma:g} sigma,"
        f" P = {result.polarization:g}, S/(S+B) = {result.signal_fraction:g}\n"
        f"  efficiency {result.efficiency:.3g} per muon ({chain})\n"
        f"  events {result.events:.3g}, muons {result.muons:.3g},"
        f" time {result.seconds:.3g} s ({result.days:.3g} days) at {result.flux:g} muons/s\n"
        f"  the demo's detector counts {result.demo_efficiency:.3g} per muon"
        f" ({result.demo_efficiency / result.efficiency:.3g} x this efficiency):"
        f" {result.demo_seconds:.3g} s at this flux"
    )
    return 0


def recorded(args: argparse.Namespace) -> int:
    """``sim``, ``replay``, ``reanalyze``, ``export`` and ``import``: recorded runs.

    A bad file is a usage error (exit 2); a corrupt recording in the database a run-time
    failure (exit 1, :func:`mupnc.cli.main`)."""
    from mupnc.db.exchange import ExchangeError
    from mupnc.errors import UsageError

    try:
        return _recorded(args)
    except ExchangeError as err:
        raise UsageError(str(err)) from None


def _recorded(args: argparse.Namespace) -> int:
    from mupnc import offline, replay

    if args.command == "sim":
        return offline.simulate(args)
    if args.command == "replay":
        return replay.replay(args)
    if args.command == "reanalyze":
        summary = offline.reanalyze(
            args.db, args.run, args.minirun, args.unblind, args.min_beam_rate, args.regress
        )
        print(json.dumps(summary, indent=2) if args.json else format_reanalysis(summary))
        return 0
    if args.command == "import":
        number, windows = offline.import_recording(args.db, args.file)
        print(f"run {number}: imported {windows} windows from {args.file}")
        return 0
    return export(args.db, args.run, args.file)


def export(url: str, number: int, path: str) -> int:
    """``mupnc export RUN FILE``: the recording (.parquet) or the results (.csv)."""
    from mupnc.db.exchange import export_parquet, export_results_csv
    from mupnc.errors import UsageError

    engine = _engine(url)
    if path.endswith(".parquet"):
        print(f"run {number}: exported {export_parquet(engine, number, path)} windows to {path}")
    elif path.endswith(".csv"):
        print(
            f"run {number}: exported {export_results_csv(engine, number, path)} results to {path}"
        )
    else:
        raise UsageError(f"{path}: export writes FILE.parquet (recording) or FILE.csv (results)")
    return 0
