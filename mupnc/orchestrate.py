"""``mupnc demo``: IOCs, monitor and dashboard as child processes on loopback.

Children run in their own sessions, so Ctrl-C reaches only this process, which then
stops them in order: end the run (SIGINT to the IOC), let the monitor drain every block
and finish, then stop the IOC and the dashboard.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mupnc.db.session import redacted
from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port, port_free
from mupnc.errors import UsageError
from mupnc.runs import new_run, simulation_arguments, source_config

MONITOR_DRAIN_SECONDS = 60.0
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

    def shutdown(self) -> None:
        """Stop every child process (SIGTERM, then SIGKILL after 10 s)."""
        for name, process in self.processes.items():
            self.signal(name, signal.SIGTERM)
            if self.wait(name, 10) is None:
                process.kill()
                process.wait()


def inject_fault(kind: str, loopback: Loopback, prefix: str = "MUPNC:") -> None:
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
    the monitor's result PVs, and a repeater port whose beacons are absorbed."""

    ioc_port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    repeater_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._sink = BeaconSink(self.repeater_port)

    @property
    def ports(self) -> list[int]:
        return [self.ioc_port, self.monitor_port]

    def environment(self, server_port: int | None) -> dict:
        return ca_environment(server_port, self.ports, self.repeater_port)

    def close(self) -> None:
        self._sink.close()


def launch(
    db: str, ioc: list[str], monitor: list[str], dashboard_port: int | None, headline: str
) -> tuple[Chain, Loopback, threading.Event]:
    """Start IOC, monitor and (unless ``dashboard_port`` is None) dashboard on a private
    loopback; print ``headline``, the dashboard address and the database URL.  Returns the
    chain, its CA set-up and an event set by SIGINT/SIGTERM."""
    loopback = Loopback()
    chain = Chain(db=db)
    chain.start("ioc", ioc, loopback.environment(loopback.ioc_port))
    chain.start("monitor", monitor, loopback.environment(loopback.monitor_port))
    if dashboard_port is not None:
        chain.start("dashboard", ["dashboard", "--port", str(dashboard_port)], {})
    print(headline, flush=True)
    if dashboard_port is not None:
        print(f"dashboard http://127.0.0.1:{dashboard_port}/", flush=True)
    print(f"database {redacted(db)}", flush=True)
    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
    return chain, loopback, interrupted


def finish(
    chain: Chain, loopback: Loopback, crashed: str | None, clean: bool, run: int, db: str
) -> int:
    """Stop the chain and say how the run ended; the command's exit status."""
    chain.shutdown()
    loopback.close()
    if crashed:
        print(f"mupnc: error: the {crashed} process stopped unexpectedly", file=sys.stderr)
        return 1
    if not clean:
        print(f"mupnc: error: the monitor did not finish run {run} cleanly", file=sys.stderr)
        return 1
    command = f"{console_command()} --db {shlex.quote(redacted(db))} report {run}"
    print(f"run {run} ended; summary: {command}", flush=True)
    return 0


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


def demo(args: argparse.Namespace) -> int:
    late = [f"{kind}@{at:g}" for at, kind in args.inject if args.duration and at >= args.duration]
    if late:
        raise UsageError(
            f"--inject {', '.join(late)}: after the run's end (--duration {args.duration:g} s)"
        )
    dashboard = None if args.no_dashboard else args.port
    refuse_port_in_use(dashboard)
    config = source_config(args)
    run = new_run(args.db, config)
    sim = simulation_arguments(args)
    chain, loopback, interrupted = launch(
        args.db, ["ioc", "--run", str(run), *sim], ["monitor"], dashboard, f"run {run}"
    )
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None
    injections = sorted(args.inject)
    crashed = None
    while not interrupted.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            break
        crashed = chain.failed()
        if crashed:
            break
        while injections and time.monotonic() - started >= injections[0][0]:
            inject_fault(injections.pop(0)[1], loopback)
        interrupted.wait(0.2)
    return finish(chain, loopback, crashed, chain.end_run(), run, args.db)
