"""``mupnc demo``: IOCs, monitor and dashboard as child processes on loopback.

Children run in their own sessions, so Ctrl-C reaches only this process, which then
stops them in order: end the run (SIGINT to the IOC), let the monitor drain every block
and finish, then stop the IOC and the dashboard.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from db.session import redacted
from mupnc.commands import new_run, source_config
from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port

MONITOR_DRAIN_SECONDS = 60.0


@dataclass
class Chain:
    """The child processes of one demo, started in data-flow order."""

    db: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict) -> None:
        command = [sys.executable, "-m", "mupnc", "--db", self.db, *args]
        self.processes[name] = subprocess.Popen(
            command, env={**os.environ, **env}, start_new_session=True, stdin=subprocess.DEVNULL
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


def inject_fault(kind: str, ports: list[int], repeater_port: int, prefix: str = "MUPNC:") -> None:
    """Switch on the IOC's fault switch ``RUN:FAULT:<KIND>`` (shift training, checks)."""
    from caproto import ChannelType
    from caproto.sync.client import write

    apply(ca_environment(None, ports, repeater_port))
    name = f"{prefix}RUN:FAULT:{kind.upper()}"
    write(name, "ON", data_type=ChannelType.STRING, notify=True, repeater=False, timeout=5)
    print(f"injected fault {kind} ({name} = ON)", flush=True)


def demo(args: argparse.Namespace) -> int:
    config = source_config(args)
    run = new_run(args.db, config)
    ioc_port, monitor_port, repeater = free_port(), free_port(), free_port()
    ports = [ioc_port, monitor_port]
    beacon_sink = BeaconSink(repeater)
    chain = Chain(db=args.db)
    sim = [
        "--mode",
        args.mode,
        "--asymmetry",
        repr(args.asymmetry),
        "--rate",
        repr(args.rate),
        "--pattern",
        args.pattern,
        "--window-rate",
        repr(args.window_rate),
        "--seed",
        str(args.seed),
    ]
    if args.channel_map:
        sim += ["--channel-map", args.channel_map]
    chain.start("ioc", ["ioc", "--run", str(run), *sim], ca_environment(ioc_port, ports, repeater))
    chain.start("monitor", ["monitor"], ca_environment(monitor_port, ports, repeater))
    if not args.no_dashboard:
        chain.start("dashboard", ["dashboard", "--port", str(args.port)], {})

    print(f"run {run}", flush=True)
    if not args.no_dashboard:
        print(f"dashboard http://127.0.0.1:{args.port}/", flush=True)
    print(f"database {redacted(args.db)}", flush=True)

    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    signal.signal(signal.SIGTERM, lambda *_: interrupted.set())
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
            inject_fault(injections.pop(0)[1], ports, repeater)
        interrupted.wait(0.2)
    clean = chain.end_run()
    chain.shutdown()
    beacon_sink.close()
    if crashed:
        print(f"mupnc: error: the {crashed} process stopped unexpectedly", file=sys.stderr)
        return 1
    if not clean:
        print("mupnc: error: the monitor did not finish the run cleanly", file=sys.stderr)
        return 1
    print(f"run {run} ended; summary: mupnc --db {redacted(args.db)} report {run}", flush=True)
    return 0
