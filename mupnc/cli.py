"""The ``mupnc`` command line (the contract: docs/reference.md, 'Command line').

Bad input gives a one-line error on stderr and exit status 2; a failure at run time
(database unreachable, schema missing, IOC not answering) gives exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import socket
import sys

from mupnc.attach import CA_PORTS
from mupnc.daq.beamline import BEAM_VARIABLES
from mupnc.daq.blocks import BlockFormatError
from mupnc.daq.channel_map import ChannelMapError
from mupnc.daq.contract import ContractError
from mupnc.daq.helicity import PATTERN_SHAPES
from mupnc.daq.scheme import SCHEMES
from mupnc.db.block_codec import RecordingError
from mupnc.db.lease import LeaseHeldError, LeaseLostError
from mupnc.db.session import (
    UNREACHABLE,
    DatabaseURLError,
    SchemaError,
    checked_url,
    database_url,
    redacted,
)
from mupnc.epics_env import MAX_ARRAY_BYTES
from mupnc.errors import UsageError
from mupnc.ioc.autosave import AutosaveError
from mupnc.monitor.alarms.rules import AlarmRulesError
from mupnc.monitor.feedback.loop import LOOPS
from mupnc.orchestrate import follow_parent
from mupnc.run_file import RunFileError
from mupnc.sim.detector import PRESETS
from mupnc.sim.faults import FAULT_KINDS
from mupnc.sim.source import SourceConfigError

DB_HELP = "database URL (default: $MUPNC_DB, else sqlite:///mupnc.db)"
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
"""What argparse takes for a negative number rather than an option."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (``mupnc: error: ...``), exit status 2, no usage dump;
    negative numbers, exponents included (``--asymmetry -5e-5``), are values, not options."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):
        message = re.sub(r"invalid _\w+ value", "invalid value", message)  # not "_speed"
        self.exit(2, f"mupnc: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _blind_box(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"blinding box must be a fraction in [0, 1), got {text!r}")
    return value


def _injection(text: str) -> tuple[float, str]:
    """``KIND[@SECONDS]``: a fault of :data:`mupnc.sim.faults.FAULT_KINDS` at a time into the
    run."""
    kind, _, at = text.partition("@")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"unknown fault {kind!r}; choose from {', '.join(FAULT_KINDS)}"
        )
    seconds = float(at) if at else 0.0
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"time must be seconds >= 0, got {at!r}")
    return seconds, kind


def _polarization(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text!r}")
    return value


def _asymmetry(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not -1 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (-1, 1), got {text!r}")
    return value


def _replay_source(text: str) -> int | None:
    """``sim`` (None) or ``replay:RUN`` (the run number)."""
    if text == "sim":
        return None
    kind, _, run = text.partition(":")
    if kind != "replay" or not run.isdigit():
        raise argparse.ArgumentTypeError(f"must be 'sim' or 'replay:RUN', got {text!r}")
    return int(run)


def _speed(text: str) -> float | None:
    """A replay speed: a factor of real time, or ``max`` (None)."""
    return None if text == "max" else _positive(text)


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be seconds >= 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed must be an integer >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port must lie in 1..65535, got {text!r}")
    return value


def _ca_port(text: str) -> int:
    """``--ca-port``: the IOC's CA server port; the monitor's is the next one."""
    value = int(text)
    if not CA_PORTS[0] <= value <= CA_PORTS[1]:
        raise argparse.ArgumentTypeError(
            f"must lie in {CA_PORTS[0]}..{CA_PORTS[1]} (the IOC serves on PORT, the monitor "
            f"on PORT+1), got {text!r}"
        )
    return value


def _pva_port(text: str) -> int:
    """``--pva-port``: the monitor's pvAccess server port (TCP and UDP search)."""
    value = int(text)
    if not CA_PORTS[0] <= value <= CA_PORTS[1] + 1:
        raise argparse.ArgumentTypeError(
            f"must lie in {CA_PORTS[0]}..{CA_PORTS[1] + 1}, got {text!r}"
        )
    return value


PVA_HELP = (
    "serve the monitor's PVs over pvAccess too (p4p; same names as over CA, plus the "
    "MON:MINIRUNS table); default: on when p4p is installed"
)


def _address(text: str) -> str:
    """An address to bind: an IP address or a host name that resolves."""
    try:
        socket.getaddrinfo(text, None)
    except (socket.gaierror, UnicodeError):
        raise argparse.ArgumentTypeError(f"cannot resolve address {text!r}") from None
    return text


BLOCK_RATES = (1.0, 1000.0)
"""Window blocks per second a DAQ may publish (Hz): slower blocks grow too large."""


def _block_rate(text: str) -> float:
    value = float(text)
    if not BLOCK_RATES[0] <= value <= BLOCK_RATES[1]:
        raise argparse.ArgumentTypeError(
            f"must lie in {BLOCK_RATES[0]:g}..{BLOCK_RATES[1]:g} blocks/s, got {text!r}"
        )
    return value


MINIRUN_HELP = "patterns per minirun (default 9000; slow schemes: 16 rotator patterns)"


def _beam_variables(text: str) -> tuple[str, ...]:
    """``--regress``: comma-separated beam variables, or ``none``."""
    if text.strip() == "none":
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BEAM_VARIABLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown beam variable {unknown[0] if unknown else text!r}"
            f" (known: {', '.join(BEAM_VARIABLES)}, or none)"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a beam variable is named twice in {text!r}")
    return names


def _minirun(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a minirun needs at least 2 patterns, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _replay_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X|max",
        help="replay speed: X times real time (default 1), or max (as fast as the monitor "
        "keeps up)",
    )
    p.add_argument(
        "--from", dest="start", type=_seconds, metavar="S", help="replay from S s of data"
    )
    p.add_argument("--to", dest="stop", type=_seconds, metavar="S", help="replay up to S s of data")


def _simulation_options(p: argparse.ArgumentParser) -> None:
    """The run's simulation settings: ``--config RUN.toml`` and flags that override it (a
    flag not given is None: the file's value, else the default named in its help)."""
    p.add_argument(
        "--config", metavar="RUN.toml", help="run configuration file (flags override it)"
    )
    p.add_argument(
        "--mode",
        choices=("alr", "afb"),
        help="A_LR (muon scattering) or A_FB (muonic-atom 2S->1S gamma); default alr",
    )
    p.add_argument(
        "--asymmetry",
        type=_asymmetry,
        metavar="A",
        help="physics asymmetry injected, as a fraction (default 1e-3)",
    )
    p.add_argument("--rate", type=_positive, metavar="HZ", help="muon rate in Hz (default 1e8)")
    p.add_argument(
        "--polarization", type=_polarization, metavar="P", help="beam polarization (default 0.9)"
    )
    p.add_argument(
        "--scheme", choices=SCHEMES, help="spin reversal: fast, slow or kick (default fast)"
    )
    p.add_argument("--preset", choices=PRESETS, help="physics preset: flat (default), sm or np")
    p.add_argument(
        "--momentum", type=_positive, metavar="MEV_C", help="beam momentum in MeV/c (default 29)"
    )
    p.add_argument(
        "--pattern",
        choices=list(PATTERN_SHAPES),
        help="helicity pattern (default quartet)",
    )
    p.add_argument(
        "--window-rate",
        type=_positive,
        metavar="HZ",
        help="helicity window rate in Hz (default 240)",
    )
    p.add_argument(
        "--seed", type=_seed, metavar="N", help="random seed of the simulation (default 1)"
    )
    p.add_argument(
        "--channel-map",
        metavar="FILE",
        help="channel map TOML file (default: shipped map for --mode)",
    )


def _common_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """``--db`` and ``--verbose``, before or after the subcommand (a subcommand's own take
    ``argparse.SUPPRESS``: given there they win, else the top-level value stands)."""
    parser.add_argument("--db", default=default, help=DB_HELP)
    flag = {} if default is None else {"default": default}
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress to stderr", **flag
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="mupnc", description=__doc__.splitlines()[0])
    _common_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the whole chain on this machine")
    _simulation_options(demo)
    demo.add_argument(
        "--duration", type=_positive, metavar="S", help="stop by itself after S seconds"
    )
    demo.add_argument(
        "--port", type=_port, default=5006, metavar="P", help="dashboard port (default 5006)"
    )
    demo.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    demo.add_argument(
        "--ca-port",
        type=_ca_port,
        metavar="PORT",
        help="Channel Access server ports: the IOC on PORT, the monitor on PORT+1 (default: "
        "free ports chosen at start; both are printed)",
    )
    demo.add_argument(
        "--pva-port",
        type=_pva_port,
        metavar="PORT",
        help="the monitor's pvAccess port, TCP and UDP (default: a free port; printed)",
    )
    demo.add_argument("--pva", action=argparse.BooleanOptionalAction, help=PVA_HELP)
    demo.add_argument(
        "--inject",
        type=_injection,
        action="append",
        default=[],
        metavar="KIND[@SECONDS]",
        help="switch on a fault at a time into the run (repeatable), e.g. stuck_helicity@60",
    )

    ioc = sub.add_parser("ioc", help="serve the soft IOCs")
    _simulation_options(ioc)
    ioc.add_argument("--prefix", default="MUPNC:", metavar="P", help="PV prefix (default MUPNC:)")
    ioc.add_argument(
        "--run", type=_count, metavar="N", help="run number (default: allocate one in the database)"
    )
    ioc.add_argument(
        "--block-rate",
        type=_block_rate,
        metavar="HZ",
        default=20.0,
        help="window blocks published per second (default 20)",
    )
    ioc.add_argument(
        "--group",
        choices=("beam", "rotator", "detector", "all"),
        default="all",
        help="serve one PV group alone (default all; run control goes with the detector)",
    )
    ioc.add_argument(
        "--blind",
        nargs="?",
        type=_blind_box,
        const=0.0,
        metavar="BOX",
        help="blind the run (JAPAN-style offset within +-BOX, a fraction; default box if omitted)",
    )
    ioc.add_argument("--list-pvs", action="store_true", help="print every PV and exit")
    ioc.add_argument(
        "--autosave",
        metavar="FILE",
        help="keep the run's state in FILE; an IOC restarted with it continues the open run",
    )
    ioc.add_argument(
        "--source",
        type=_replay_source,
        default=None,
        metavar="sim|replay:RUN",
        help="the live simulation (default) or a replay of recorded run RUN",
    )
    _replay_options(ioc)

    pvs = sub.add_parser("pvs", help="list every PV of the IOC and the monitor")
    _simulation_options(pvs)
    pvs.add_argument("--prefix", default="MUPNC:", metavar="P", help="PV prefix (default MUPNC:)")
    pvs.add_argument(
        "--block-rate",
        type=_block_rate,
        metavar="HZ",
        default=20.0,
        help="the IOC's window blocks per second, which sets its ring's depth (default 20)",
    )
    pvs.add_argument(
        "--alarm-rules", metavar="FILE", help="alarm rules TOML (default: the shipped rules)"
    )
    pvs.add_argument(
        "--markdown",
        action="store_true",
        help="a Markdown table (the PV table of docs/reference.md, with --prefix '')",
    )

    simulate = sub.add_parser("sim", help="simulate and record a run offline, at full speed")
    _simulation_options(simulate)
    length = simulate.add_mutually_exclusive_group(required=True)
    length.add_argument("--windows", type=_count, metavar="N", help="number of helicity windows")
    length.add_argument("--seconds", type=_positive, metavar="S", help="seconds of data")
    simulate.add_argument(
        "--block-rate",
        type=_block_rate,
        metavar="HZ",
        default=20.0,
        help="blocks per second of data, as the live IOC publishes them (default 20)",
    )
    simulate.add_argument("--minirun", type=_minirun, metavar="N", help=MINIRUN_HELP)

    replay = sub.add_parser("replay", help="play a recorded run back through the IOCs")
    replay.add_argument("run", type=int, help="recorded run")
    _replay_options(replay)
    replay.add_argument(
        "--port", type=_port, default=5006, metavar="P", help="dashboard port (default 5006)"
    )
    replay.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")

    reanalyze = sub.add_parser("reanalyze", help="analyse a recorded run again, without IOCs")
    reanalyze.add_argument("run", type=int, help="recorded run")
    reanalyze.add_argument("--json", action="store_true", help="machine-readable output")
    reanalyze.add_argument(
        "--minirun",
        metavar="N",
        type=_minirun,
        help="patterns (slow schemes: rotator patterns) per minirun (default: the run's own)",
    )
    reanalyze.add_argument(
        "--min-beam-rate",
        type=_positive,
        metavar="HZ",
        help="low-beam cut: drop patterns with a window below HZ muons/s (default: no cut)",
    )
    reanalyze.add_argument(
        "--unblind", action="store_true", help="report the true values of a blinded run"
    )
    reanalyze.add_argument(
        "--regress",
        type=_beam_variables,
        metavar="VAR,...",
        help="beam variables the regressed asymmetry is corrected for: x, y, xp, yp, dpp, or"
        " 'none' (default: every one the run's beam monitors measure)",
    )

    export = sub.add_parser("export", help="export a run: recording (.parquet), results (.csv)")
    export.add_argument("run", type=int, help="run number")
    export.add_argument("file", help="FILE.parquet (the recording) or FILE.csv (the results)")

    load = sub.add_parser("import", help="import a recording (.parquet) as a new run")
    load.add_argument("file", help="FILE.parquet written by mupnc export")

    monitor = sub.add_parser("monitor", help="the online monitor")
    monitor.add_argument(
        "--prefix", default="MUPNC:", metavar="P", help="PV prefix (default MUPNC:)"
    )
    monitor.add_argument("--minirun", type=_minirun, metavar="N", help=MINIRUN_HELP)
    monitor.add_argument("--pva", action=argparse.BooleanOptionalAction, help=PVA_HELP)
    monitor.add_argument(
        "--alarm-rules", metavar="FILE", help="alarm rules TOML (default: the shipped rules)"
    )

    feedback = sub.add_parser(
        "feedback", help="switch a feedback loop of the running monitor (off, dry-run, on)"
    )
    feedback.add_argument("loop", choices=LOOPS, help="the loop")
    feedback.add_argument(
        "mode", choices=("off", "dry-run", "on"), help="dry-run: decide and record, write nothing"
    )
    feedback.add_argument(
        "--prefix", default="MUPNC:", metavar="P", help="PV prefix (default MUPNC:)"
    )

    alarms = sub.add_parser("alarms", help="alarm list and operator actions")
    alarms.add_argument(
        "action", nargs="?", choices=("ack", "shelve"), help="acknowledge or shelve alarms"
    )
    alarms.add_argument("ids", nargs="*", type=int, metavar="ID", help="alarm id(s)")
    alarms.add_argument(
        "--for", dest="seconds", type=_positive, metavar="S", help="shelve: for S seconds"
    )
    alarms.add_argument(
        "--who",
        default=os.environ.get("USER", "shifter"),
        metavar="NAME",
        help="operator name (default $USER)",
    )
    alarms.add_argument("--run", type=int, metavar="N", help="only alarms of this run")
    alarms.add_argument("--all", action="store_true", help="also closed alarms (the history)")
    alarms.add_argument("--json", action="store_true", help="machine-readable output")

    dash = sub.add_parser("dashboard", help="the Bokeh dashboard server")
    dash.add_argument("--port", type=_port, default=5006, metavar="P", help="port (default 5006)")
    dash.add_argument(
        "--follow",
        default="MUPNC:",
        metavar="P",
        help="the monitor's PV prefix: its newest result is shown between database polls "
        "(default MUPNC:)",
    )
    dash.add_argument(
        "--no-follow",
        action="store_true",
        help="show what the database holds, polled once a second",
    )
    dash.add_argument(
        "--address",
        type=_address,
        default="127.0.0.1",
        metavar="A",
        help="address to bind (default loopback)",
    )
    dash.add_argument(
        "--allow-websocket-origin",
        action="append",
        metavar="HOST[:PORT]",
        help="also accept browser connections from this origin",
    )

    runs = sub.add_parser("runs", help="list runs")
    runs.add_argument("--json", action="store_true", help="machine-readable output")

    run = sub.add_parser("run", help="run administration")
    run_actions = run.add_subparsers(dest="action", required=True, metavar="ACTION")
    register = run_actions.add_parser(
        "new", help="register a run for an outside DAQ IOC and print its number"
    )
    register.add_argument("--config", metavar="RUN.toml", help="run configuration file")
    register.add_argument("--mode", choices=("alr", "afb"), help="A_LR or A_FB (default alr)")
    register.add_argument(
        "--channel-map", metavar="FILE", help="channel map TOML file (default: shipped map)"
    )
    _common_options(register, argparse.SUPPRESS)
    close = run_actions.add_parser(
        "close", help="end an open run whose processes are gone (state aborted)"
    )
    close.add_argument("run", type=int, help="run number")
    close.add_argument("--reason", metavar="TEXT", help="why (stored with the run)")
    close.add_argument(
        "--who",
        default=os.environ.get("USER", "shifter"),
        metavar="NAME",
        help="operator name (default $USER)",
    )
    _common_options(close, argparse.SUPPRESS)

    report = sub.add_parser("report", help="prompt summary of a run")
    report.add_argument("run", type=int, help="run number")
    report.add_argument("--json", action="store_true", help="machine-readable output")

    plan = sub.add_parser("plan", help="sensitivity planner: events and running time needed")
    plan.add_argument("--mode", choices=("alr", "afb"), required=True, help="A_LR or A_FB")
    plan.add_argument("--z", type=int, help="afb: nuclear charge of the target (default 36, Kr)")
    plan.add_argument("--q2", type=_positive, metavar="GEV2", help="alr: Q^2 in GeV^2 (default 1)")
    plan.add_argument(
        "--flux",
        type=_positive,
        default=1e11,
        metavar="PHI",
        help="muon rate in muons/s (default 1e11)",
    )
    plan.add_argument(
        "--asymmetry",
        type=_asymmetry,
        metavar="A",
        help="physics asymmetry (default: the SM value)",
    )
    plan.add_argument(
        "--sigma",
        type=_positive,
        default=5.0,
        metavar="N",
        help="significance in sigma (default 5)",
    )
    plan.add_argument(
        "--polarization",
        type=_positive,
        default=1.0,
        metavar="P",
        help="beam polarization (default 1)",
    )
    plan.add_argument(
        "--signal-fraction",
        type=_positive,
        default=1.0,
        metavar="D",
        help="S/(S+B) dilution (default 1)",
    )
    plan.add_argument(
        "--efficiency",
        type=_positive,
        metavar="EPS",
        help="events per muon (default: the efficiency chain)",
    )
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    dbp = sub.add_parser("db", help="database administration")
    dbp.add_argument("action", choices=("upgrade",), help="upgrade: create or migrate the schema")
    for command in sub.choices.values():
        _common_options(command, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    logging.getLogger("caproto").setLevel(logging.WARNING)
    # libca's 16 kB default would refuse the window blocks of any large DAQ: every mupnc
    # process reads it at its first CA call, so a hand-started monitor gets it too
    os.environ.setdefault("EPICS_CA_MAX_ARRAY_BYTES", str(MAX_ARRAY_BYTES))
    follow_parent()
    try:
        args.db = checked_url(database_url(args.db))
    except DatabaseURLError as err:
        parser.exit(2, f"mupnc: error: --db: {err}\n")
    try:
        return _dispatch(args)
    except (
        UsageError,
        ChannelMapError,
        SourceConfigError,
        RunFileError,
        AlarmRulesError,
        AutosaveError,
    ) as err:
        parser.exit(2, f"mupnc: error: {err}\n")
    except BrokenPipeError:  # e.g. `mupnc report 1 | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (
        SchemaError,
        ConnectionError,
        LookupError,
        LeaseHeldError,
        LeaseLostError,
        ContractError,
        BlockFormatError,
    ) as err:  # ContractError, BlockFormatError: a DAQ that breaks docs/daq-contract.md
        print(f"mupnc: error: {err}", file=sys.stderr)
        return 1
    except UNREACHABLE as err:  # gone mid-command, or a SQLite file locked for 30 s
        reason = str(err.orig).strip().splitlines()[0] if err.orig else type(err).__name__
        print(f"mupnc: error: database {redacted(args.db)}: {reason}", file=sys.stderr)
        return 1
    except RecordingError as err:  # in the database: a run-time failure, not bad input
        print(f"mupnc: error: corrupt recording: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _check_alarm_arguments(args: argparse.Namespace) -> None:
    if args.action and not args.ids:
        raise UsageError(f"alarms {args.action} needs the id of an alarm")
    if args.action == "shelve" and (args.seconds is None or len(args.ids) != 1):
        raise UsageError("alarms shelve takes one id and --for SECONDS")
    if args.seconds is not None and args.action != "shelve":
        raise UsageError("--for goes with alarms shelve")


def _dispatch(args: argparse.Namespace) -> int:
    from mupnc import commands

    if args.command == "runs":
        return commands.list_runs(args.db, as_json=args.json)
    if args.command == "run" and args.action == "new":
        return commands.register_run(args)
    if args.command == "run":
        return commands.close_run(args.db, args.run, args.reason, args.who)
    if args.command == "report":
        summary = commands.report(args.db, args.run)
        print(json.dumps(summary, indent=2) if args.json else commands.format_report(summary))
        return 0
    if args.command == "db":
        return commands.db_upgrade(args.db)
    if args.command == "plan":
        return commands.plan(args)
    if args.command == "ioc":
        return commands.ioc(args)
    if args.command == "monitor":
        return commands.monitor(args)
    if args.command == "pvs":
        return commands.pvs(args)
    if args.command == "feedback":
        return commands.feedback(args)
    if args.command == "alarms":
        _check_alarm_arguments(args)
        return commands.alarms(args)
    if args.command == "dashboard":
        return commands.dashboard(args)
    if args.command in ("sim", "replay", "reanalyze", "export", "import"):
        return commands.recorded(args)
    if args.command == "demo":
        from mupnc.orchestrate import demo

        return demo(args)
    raise UsageError(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
