"""``mupnc demo`` and ``mupnc replay``: IOCs, monitor and dashboard as child processes on
loopback.

Children run in their own sessions, so Ctrl-C reaches only this process, which then
stops them in order: end the run (SIGINT to the IOC), let the monitor drain every block
and finish, then stop the IOC and the dashboard.  Whatever stops the chain — SIGINT,
SIGTERM or SIGHUP at any moment, start-up included, a child that dies, a second signal
(everything killed at once) — the run is left ``ended`` or ``aborted`` with the reason
(:class:`ChainedRun`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from mupnc.attach import attach_lines, fixed_ca_ports, fixed_pva_port
from mupnc.db.lease import end_run
from mupnc.db.models import Run
from mupnc.db.session import make_engine, redacted, transaction
from mupnc.epics_env import (
    BeaconSink,
    apply,
    ca_environment,
    free_port,
    port_free,
    pva_environment,
)
from mupnc.errors import UsageError
from mupnc.monitor.stop import StopRequest
from mupnc.runs import new_run, run_feedback, simulation_arguments, source_config
from mupnc.signals import StopNow, ignore_stop_signals, stop_on_signals

MONITOR_DRAIN_SECONDS = 60.0
PREFIX = "MUPNC:"
"""PV prefix of a demo's or replay's IOC and monitor (their default)."""
PARENT_ENV = "MUPNC_PARENT_PID"
"""Set for every child of a :class:`Chain`: the child stops (SIGTERM) when this parent
dies, even by SIGKILL (see :func:`follow_parent`)."""
_PR_SET_PDEATHSIG = 1


def follow_parent() -> None:
    """In a child of a :class:`Chain`: ask Linux for SIGTERM when the parent dies, and
    stop at once if it already has.  Children run in their own sessions (so Ctrl-C reaches
    only the parent), which would otherwise leave them running after a crash."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Chain:
    """The child processes of one demo, started in data-flow order."""

    db: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict) -> None:
        """Start ``mupnc ARGS`` as child ``name``; the database URL goes in ``MUPNC_DB``,
        not on the command line, where any local user could read its password."""
        command = [sys.executable, "-m", "mupnc", *args]
        self.processes[name] = subprocess.Popen(
            command,
            env={**os.environ, **env, PARENT_ENV: str(os.getpid()), "MUPNC_DB": self.db},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )

    def failed(self) -> str | None:
        """Name of a child that exited by itself, if any."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None

    def signal(self, name: str, sig: int) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(sig)

    def wait(self, name: str, timeout: float) -> int | None:
        process = self.processes.get(name)
        if process is None:
            return 0
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def end_run(self) -> bool:
        """End the run (the IOC keeps serving); True if the monitor then finished cleanly."""
        self.signal("ioc", signal.SIGINT)  # last blocks, RUN:STATE = ENDED
        monitor_rc = self.wait("monitor", MONITOR_DRAIN_SECONDS)
        if monitor_rc is None:
            self.signal("monitor", signal.SIGINT)
            monitor_rc = self.wait("monitor", 10)
        return monitor_rc == 0

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every child process: SIGTERM to all, SIGKILL to those still running after
        ``timeout`` s."""
        for name in self.processes:
            self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in self.processes:
            self.wait(name, max(0.0, deadline - time.monotonic()))
        self.kill()

    def kill(self) -> None:
        """Stop every child process at once (SIGKILL)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait()


def inject_fault(kind: str, loopback: Loopback, prefix: str = PREFIX) -> None:
    """Switch on the IOC's fault switch ``RUN:FAULT:<KIND>`` (shift training, checks)."""
    from caproto import ChannelType
    from caproto.sync.client import write

    apply(loopback.environment(None))
    name = f"{prefix}RUN:FAULT:{kind.upper()}"
    write(name, "ON", data_type=ChannelType.STRING, notify=True, repeater=False, timeout=5)
    print(f"injected fault {kind} ({name} = ON)", flush=True)


@dataclass
class Loopback:
    """A private loopback Channel Access set-up: a server port for the IOC process, one for
    the monitor's result PVs (free ports unless given), and a repeater port whose beacons
    are absorbed; ``pva_port``: the monitor's pvAccess server (None: no pvAccess)."""

    ioc_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    repeater_port: int = field(default_factory=free_port)
    pva_port: int | None = None

    def __post_init__(self) -> None:
        while self.repeater_port in [*self.ports, self.pva_port]:  # a free port may be a given one
            self.repeater_port = free_port()
        self._sink = BeaconSink(self.repeater_port)

    @property
    def ports(self) -> list[int]:
        return [self.ioc_port, self.monitor_port]

    def environment(self, server_port: int | None) -> dict:
        env = ca_environment(server_port, self.ports, self.repeater_port)
        if self.pva_port is not None:  # only the monitor serves pvAccess
            serves = server_port == self.monitor_port
            env.update(pva_environment(self.pva_port if serves else None, [self.pva_port]))
        return env

    def close(self) -> None:
        self._sink.close()


class ChainedRun:
    """A run taken through a :class:`Chain` (demo, replay), always ended: :meth:`close`
    leaves it ``ended`` (the IOC ended it and the monitor finished) or ``aborted`` with
    the reason, whatever stopped the chain."""

    def __init__(self, db: str, run: int, stop: StopRequest) -> None:
        self.db, self.run, self.stop = db, run, stop
        self.chain = Chain(db=db)
        self.loopback: Loopback | None = None
        self.abort_reason: str | None = None

    def launch(
        self,
        ioc: list[str],
        monitor: list[str],
        dashboard_port: int | None,
        headline: str,
        ca_ports: list[int] | None = None,
        pva_port: int | None = None,
    ) -> None:
        """Start IOC, monitor and (unless ``dashboard_port`` is None) dashboard on a private
        loopback, the IOC and the monitor on ``ca_ports`` (default: free ports); print
        ``headline``, how to attach a CA client (:func:`mupnc.attach.attach_lines`), the
        dashboard address and the database URL; ``pva_port``: the monitor's pvAccess port
        (None: the monitor serves none, ``monitor`` holds ``--no-pva``).  Nothing is
        started if a stop signal came first."""
        if self.stop.is_set():
            return
        self.loopback = loopback = Loopback(*ca_ports) if ca_ports else Loopback()
        loopback.pva_port = pva_port
        self.chain.start("ioc", ioc, loopback.environment(loopback.ioc_port))
        self.chain.start("monitor", monitor, loopback.environment(loopback.monitor_port))
        if dashboard_port is not None:
            dashboard = ["dashboard", "--port", str(dashboard_port), "--follow", PREFIX]
            self.chain.start("dashboard", dashboard, loopback.environment(None))
        print(headline, flush=True)
        listing = f"{console_command()} pvs"
        for line in attach_lines(loopback.ports, PREFIX, listing, pva_port):
            print(line, flush=True)
        if dashboard_port is not None:
            print(f"dashboard http://127.0.0.1:{dashboard_port}/", flush=True)
        print(f"database {redacted(self.db)}", flush=True)

    def watch(self, done: Callable[[], bool]) -> None:
        """Return when ``done()`` (called five times a second), a stop signal, or a child
        process that exited by itself: the monitor having recorded the run to its end (the
        IOC ended it: ``RUN:STOP``), or else a crash (then the run is aborted, naming it)."""
        while not self.stop.is_set() and not done():
            crashed = self.chain.failed()
            if crashed and not done():
                status = self.chain.processes[crashed].returncode
                if (crashed, status) == ("monitor", 0) and run_state(self.db, self.run) == "ended":
                    print(f"run {self.run} was ended through the IOC (RUN:STOP)", flush=True)
                    return
                self.abort_reason = f"the {crashed} process stopped unexpectedly (exit {status})"
                return
            self.stop.wait(0.2)

    def end_run(self) -> None:
        """End the run through the IOC and let the monitor drain it; if the monitor never
        took the run (stopped during start-up), nothing is waited for."""
        if self.abort_reason is not None:
            return
        why = self.stop.reason if self.stop.is_set() else "the chain stopped"
        if not self.chain.processes:
            self.abort_reason = f"stopped ({why}) during start-up"
            return
        if run_state(self.db, self.run) == "starting":
            self.abort_reason = f"stopped ({why}) before the monitor began the run"
            return
        if not self.chain.end_run():
            self.abort_reason = f"the monitor did not finish the run in {MONITOR_DRAIN_SECONDS:g} s"

    def close(self) -> tuple[str, str | None]:
        """Stop every child (at once on a second signal), end the run if it is still open,
        and say how it ended; returns the run's state and end reason."""
        try:
            self.chain.shutdown()
        except StopNow:
            self.chain.kill()
        ignore_stop_signals()  # every child is gone: nothing may stop the run's ending now
        if self.loopback is not None:
            self.loopback.close()
        why = self.stop.reason if self.stop.is_set() else "the chain stopped"
        state, reason = settle_run(self.db, self.run, self.abort_reason or f"stopped ({why})")
        if state == "ended":
            command = f"{console_command()} --db {shlex.quote(redacted(self.db))} report {self.run}"
            print(f"run {self.run} ended; summary: {command}", flush=True)
        else:
            print(f"mupnc: error: run {self.run} {state}: {reason}", file=sys.stderr, flush=True)
        return state, reason

    def kill(self) -> None:
        """A second stop signal: every child at once."""
        self.abort_reason = (
            self.abort_reason or f"stopped at once by a second signal (first: {self.stop.reason})"
        )
        self.chain.kill()

    def status(self, state: str) -> int:
        """The command's exit status: 0 ended, 130 stopped by a signal, else 1."""
        if state == "ended" and self.abort_reason is None:
            return 0
        return 130 if self.stop.is_set() else 1


def run_state(db: str, run: int) -> str | None:
    """The run's state in the database (None if it is not there)."""
    engine = make_engine(db)
    try:
        with transaction(engine) as session:
            return session.scalar(select(Run.state).where(Run.number == run))
    finally:
        engine.dispose()


def settle_run(db: str, run: int, reason: str) -> tuple[str, str | None]:
    """End ``run`` as ``aborted`` with ``reason`` unless it ended; an aborted run gets
    ``reason`` (the chain's view: its monitor only saw that it was stopped).  Returns the
    run's state and end reason."""
    engine = make_engine(db)
    try:
        with transaction(engine) as session:
            end_run(session, run, "aborted", reason, datetime.now(UTC))
            row = session.get(Run, run)
            if row.state == "aborted":
                row.end_reason = reason
            return row.state, row.end_reason
    finally:
        engine.dispose()


def console_command() -> str:
    """How to type ``mupnc`` here: plain ``mupnc`` when it is on the PATH, else the path of
    this environment's script (relative to the working folder if inside it: after
    ``make demo``, ``.venv/bin/mupnc``)."""
    script = Path(sys.executable).with_name("mupnc")
    if shutil.which("mupnc") == str(script) or not script.exists():
        return "mupnc"
    try:
        return shlex.quote(str(script.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(script))


def refuse_port_in_use(port: int | None) -> None:
    """Refuse a dashboard ``port`` another server listens on (before a run is allocated)."""
    if port is not None and not port_free(port):
        raise UsageError(f"--port {port}: in use on this machine (another dashboard?)")


def demo_pva_port(args: argparse.Namespace, ca_ports: list[int], dashboard: int | None):
    """The monitor's pvAccess port: ``--pva-port`` (checked), a free one, or None with
    ``--no-pva`` (or without p4p)."""
    from mupnc.attach import pva_wanted

    if not pva_wanted(args.pva):
        return None
    if args.pva_port is not None:
        return fixed_pva_port(args.pva_port, ca_ports, dashboard)
    return free_port()


def demo(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    late = [f"{kind}@{at:g}" for at, kind in args.inject if args.duration and at >= args.duration]
    if late:
        raise UsageError(
            f"--inject {', '.join(late)}: after the run's end (--duration {args.duration:g} s)"
        )
    dashboard = None if args.no_dashboard else args.port
    refuse_port_in_use(dashboard)
    ca_ports = None if args.ca_port is None else fixed_ca_ports(args.ca_port, dashboard)
    pva_port = demo_pva_port(args, ca_ports or [], dashboard)
    config = source_config(args)
    chained = ChainedRun(
        args.db, new_run(args.db, config, feedback=run_feedback(args, config)), stop
    )
    sim = simulation_arguments(args)
    injections = sorted(args.inject)
    started = time.monotonic()

    def done() -> bool:
        elapsed = time.monotonic() - started
        while injections and elapsed >= injections[0][0] and chained.loopback is not None:
            inject_fault(injections.pop(0)[1], chained.loopback)
        return bool(args.duration) and elapsed >= args.duration

    try:
        ioc = ["ioc", "--run", str(chained.run), *sim]
        monitor = ["monitor"] if pva_port else ["monitor", "--no-pva"]
        chained.launch(ioc, monitor, dashboard, f"run {chained.run}", ca_ports, pva_port)
        started = time.monotonic()
        chained.watch(done)
        chained.end_run()
    except StopNow:
        chained.kill()
    state, _ = chained.close()
    return chained.status(state)
