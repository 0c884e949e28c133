"""Implementations of the ``mupnc`` subcommands (thin: they wire the packages together)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading

from sqlalchemy import select

from db.models import CUMULATIVE, AsymmetryResult, HelicityError, Run
from db.session import create_schema, make_engine, redacted, require_schema, transaction
from db.store import allocate_run
from sim.channel_map import load_channel_map
from sim.source import SourceConfig

log = logging.getLogger("mupnc")


def _engine(url: str):
    engine = make_engine(url)
    require_schema(engine)
    return engine


def db_upgrade(url: str) -> int:
    create_schema(make_engine(url))
    print(f"schema up to date in {redacted(url)}")
    return 0


def source_config(args: argparse.Namespace) -> SourceConfig:
    """The simulation settings given on the command line."""
    channel_map = load_channel_map(args.channel_map) if args.channel_map else None
    if channel_map is not None and channel_map.mode != args.mode:
        raise LookupError(
            f"{args.channel_map}: channel map is for mode {channel_map.mode!r}, not {args.mode!r}"
        )
    return SourceConfig(
        mode=args.mode,
        asymmetry=args.asymmetry,
        muon_rate=args.rate,
        pattern=args.pattern,
        window_rate=args.window_rate,
        seed=args.seed,
        channel_map=channel_map,
    )


def run_config(config: SourceConfig) -> dict:
    """The run configuration stored with the run (JSON-serializable)."""
    return {
        "mode": config.mode,
        "asymmetry": config.asymmetry,
        "polarization": config.polarization,
        "muon_rate": config.muon_rate,
        "momentum": config.momentum,
        "window_rate": config.window_rate,
        "pattern": config.pattern,
        "delay_patterns": config.delay_patterns,
        "seed": config.seed,
        "blinded": False,
        "reversal": "fast",
        "channel_map": json.loads(config.resolved_channel_map().to_json()),
    }


def new_run(url: str, config: SourceConfig, source: str = "sim") -> int:
    engine = make_engine(url)
    create_schema(engine)
    with transaction(engine) as session:
        return allocate_run(session, source=source, mode=config.mode, config=run_config(config))


def ioc(args: argparse.Namespace) -> int:
    from ioc.main import serve
    from ioc.server import build_ioc

    config = source_config(args)
    if args.list_pvs:
        group = build_ioc(args.prefix, config, run_number=0, block_rate=args.block_rate)
        print("PV\ttype\tunits\tmeaning")
        for name, channel in group.pvdb.items():
            doc = channel.pvspec.doc if hasattr(channel, "pvspec") else ""
            print(f"{name}\t{channel.data_type.name}\t{getattr(channel, 'units', '')}\t{doc}")
        return 0
    run = args.run if args.run is not None else new_run(args.db, config)
    group = build_ioc(args.prefix, config, run_number=run, block_rate=args.block_rate)
    log.info("IOC serving run %d with prefix %s", run, args.prefix)
    asyncio.run(serve(group))
    return 0


def monitor(args: argparse.Namespace) -> int:
    from monitor.publisher import ResultPublisher
    from monitor.service import OnlineMonitor

    engine = _engine(args.db)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    publisher = ResultPublisher(args.prefix)
    try:
        OnlineMonitor(args.prefix, engine, args.minirun, publisher=publisher).run(stop)
    finally:
        publisher.close()
    return 0


def dashboard(args: argparse.Namespace) -> int:
    from dashboards.server import serve

    _engine(args.db)
    origins = [f"127.0.0.1:{args.port}", f"localhost:{args.port}"]
    origins += args.allow_websocket_origin or []
    print(f"dashboard: http://{args.address}:{args.port}/", flush=True)
    serve(args.db, port=args.port, address=args.address, allow_websocket_origin=origins)
    return 0


def list_runs(url: str, as_json: bool) -> int:
    with transaction(_engine(url)) as session:
        runs = [
            {
                "run": r.number,
                "state": r.state,
                "start": r.start.isoformat(),
                "windows": r.windows,
                "source": r.source,
                "replay_of": r.replay_of,
            }
            for r in session.scalars(select(Run).order_by(Run.number))
        ]
    if as_json:
        print(json.dumps(runs, indent=2))
        return 0
    print(f"{'run':>5}  {'state':8}  {'source':6}  {'windows':>10}  start")
    for r in runs:
        print(f"{r['run']:>5}  {r['state']:8}  {r['source']:6}  {r['windows']:>10}  {r['start']}")
    return 0


def report(url: str, number: int) -> dict:
    """The prompt summary of a run as a JSON-ready dict (shape in shared/interface.md)."""
    with transaction(_engine(url)) as session:
        run = session.get(Run, number)
        if run is None:
            raise LookupError(f"run {number} is not in the database")
        results = {
            r.channel: r
            for r in session.scalars(
                select(AsymmetryResult).where(
                    AsymmetryResult.run == number, AsymmetryResult.minirun == CUMULATIVE
                )
            )
        }
        errors = {
            e.kind: e.count
            for e in session.scalars(select(HelicityError).where(HelicityError.run == number))
        }
        combined, charge = results.pop("combined", None), results.pop("charge", None)
        channel_names = [c["name"] for c in run.config.get("channel_map", {}).get("channels", [])]
        return {
            "run": run.number,
            "state": run.state,
            "source": run.source,
            "mode": run.mode,
            "windows": run.windows,
            "lost_windows": run.lost_windows,
            "patterns_good": combined.n if combined else 0,
            "blinded": run.blinded,
            "asymmetry": {
                "value": combined.value if combined else None,
                "error": combined.error if combined else None,
                "chi2_ndf": combined.chi2_ndf if combined else None,
            },
            "charge_asymmetry": {"value": charge.value, "error": charge.error} if charge else None,
            "channels": [
                {"name": name, "value": results[name].value, "error": results[name].error}
                for name in channel_names
                if name in results
            ],
            "helicity_errors": errors,
            "injected_asymmetry": run.config.get("asymmetry"),
        }


def _ppm(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e6:+.1f}"


def format_report(s: dict) -> str:
    a = s["asymmetry"]
    lines = [
        f"Run {s['run']} ({s['mode'].upper()}, {s['source']}, {s['state']})"
        + ("  BLINDED" if s["blinded"] else ""),
        f"  windows {s['windows']}, lost {s['lost_windows']}, good patterns {s['patterns_good']}",
        f"  asymmetry {_ppm(a['value'])} +- {_ppm(a['error']).lstrip('+')} ppm"
        + (f", chi2/ndf {a['chi2_ndf']:.2f}" if a["chi2_ndf"] is not None else ""),
    ]
    if s["charge_asymmetry"]:
        q = s["charge_asymmetry"]
        lines.append(f"  charge asymmetry {_ppm(q['value'])} +- {_ppm(q['error']).lstrip('+')} ppm")
    lines.append("  channels (ppm):")
    lines += [
        f"    {c['name']:<16} {_ppm(c['value'])} +- {_ppm(c['error']).lstrip('+')}"
        for c in s["channels"]
    ]
    errs = ", ".join(f"{k} {v}" for k, v in s["helicity_errors"].items())
    lines.append(f"  helicity errors: {errs or 'none'}")
    return "\n".join(lines)
