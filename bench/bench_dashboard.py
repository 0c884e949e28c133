"""Dashboard server load: N concurrent headless-Chromium sessions of the shifter page at 1 Hz.

Run: .venv/bin/python bench/bench_dashboard.py [--duration 600] [--sessions 10] [--every 10]

The whole chain runs as in production: ``mupnc demo --no-dashboard`` (IOC, monitor, SQLite
in a temporary folder; the monitor writes a snapshot a second and updates its result PVs
four times a second) and ``mupnc dashboard`` as its own process, which is the one
measured, following the monitor's result PVs (``--no-follow``: the database alone).  One
headless Chromium opens ``--sessions`` tabs on the shifter page; every session streams the
database at 1 Hz and the newest result at up to 4 Hz.  Every ``--every`` seconds the server's
CPU (utime + stime from /proc, % of one core over the interval) and RSS are printed; the
summary gives mean and peak CPU, RSS at start/end/peak and its drift per hour, and checks
that every tab still received points at the end.  Chromium, the IOC and the monitor share
the machine, so the figures carry the machine's load (printed before and after).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import cpu_seconds

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IDLE_JS = (
    "() => window.Bokeh !== undefined && Bokeh.documents.length > 0"
    " && Bokeh.documents.every(d => d.is_idle)"
)
POINTS_JS = "() => Bokeh.documents[0].get_model_by_name('asym_source').data.x.length"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on port {port}")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB, from /proc/PID/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 1e6


def mupnc(
    db: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """``mupnc --db DB ARGS`` as a child process, its stderr into ``log`` (if given)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mupnc", "--db", db, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if log is None else log.open("w"),
        env=None if env is None else {**os.environ, **env},
    )


def free_pair() -> int:
    """A port P with P and P + 1 free on loopback (TCP and UDP): the demo's IOC and monitor
    (``--ca-port P``)."""
    from mupnc.epics_env import port_free, udp_port_free

    while True:
        base = free_port()
        if base < 65534 and all(port_free(p) and udp_port_free(p) for p in (base, base + 1)):
            return base


def stop(process: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 90) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured")
    parser.add_argument("--sessions", type=int, default=10, help="concurrent browser tabs")
    parser.add_argument("--every", type=float, default=10.0, help="sampling interval (s)")
    parser.add_argument(
        "--no-follow", action="store_true", help="the dashboard shows only the database"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = tempfile.mkdtemp(prefix="bench_dashboard_")
    db, port = f"sqlite:///{folder}/bench.db", free_port()
    print(f"load average before: {os.getloadavg()}, cores {os.cpu_count()}")
    ca = free_pair()
    demo = ["demo", "--no-dashboard", "--ca-port", str(ca), "--duration", str(args.duration + 120)]
    chain = mupnc(db, *demo)
    time.sleep(3)  # the demo creates the schema and the run before the dashboard reads them
    follow = ["--no-follow"] if args.no_follow else []
    client = {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ca} 127.0.0.1:{ca + 1}",
    }
    log = Path(folder) / "dashboard.log"
    server = mupnc(db, "dashboard", "--port", str(port), *follow, env=client, log=log)
    print(f"dashboard log: {log}")
    try:
        wait_listening(port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = []
            for _ in range(args.sessions):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(IDLE_JS, timeout=120_000)
                pages.append(page)
            start_points = [page.evaluate(POINTS_JS) for page in pages]
            print(f"{args.sessions} sessions open; server pid {server.pid}")
            print(f"{'t (s)':>7} {'CPU %':>7} {'RSS (MB)':>9}")
            t0 = last_t = time.monotonic()
            c0 = last_c = cpu_seconds(server.pid)
            rss = [rss_mb(server.pid)]
            cpu = []
            while (now := time.monotonic()) - t0 < args.duration:
                # drive the pages' event loops while waiting
                pages[0].wait_for_timeout(min(args.every, args.duration - (now - t0)) * 1000)
                t, c = time.monotonic(), cpu_seconds(server.pid)
                cpu.append(100 * (c - last_c) / (t - last_t))
                rss.append(rss_mb(server.pid))
                print(f"{t - t0:7.0f} {cpu[-1]:7.1f} {rss[-1]:9.1f}", flush=True)
                last_t, last_c = t, c
            end_points = [page.evaluate(POINTS_JS) for page in pages]
            browser.close()
        total = 100 * (last_c - c0) / (last_t - t0)
        hours = (last_t - t0) / 3600
        print(
            f"server CPU: mean {total:.1f} % of one core, peak interval {max(cpu):.1f} %; "
            f"RSS start {rss[0]:.0f} MB, end {rss[-1]:.0f} MB, peak {max(rss):.0f} MB, "
            f"drift {(rss[-1] - rss[0]) / hours:+.0f} MB/h"
        )
        grew = [e - s for s, e in zip(start_points, end_points, strict=True)]
        print(f"points received per session over the run: min {min(grew)}, max {max(grew)}")
        print(f"load average after: {os.getloadavg()}")
        return 0 if min(grew) > 0 else 1
    finally:
        stop(server)
        stop(chain)


if __name__ == "__main__":
    sys.exit(main())
