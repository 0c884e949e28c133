"""Soak and chaos: the whole chain at MOLLER scale, with faults of the system itself.

Run: ``.venv/bin/python bench/bench_soak.py [--duration 1800] [--window-rate 1920]
[--channels 512] [--no-chaos] [--events ioc,monitor,postgres,socket] [--no-browser]
[--full-refill] [--json]``

The chain runs as in production, each part its own process: ``mupnc ioc`` (simulation,
``--autosave``), ``mupnc monitor``, ``mupnc dashboard`` with a headless Chromium tab open
on the shifter page, and a PostgreSQL server of its own (:mod:`support.pg_server`).  With chaos
(the default), at 20/40/60/80 % of the duration:

1. the IOC is stopped (SIGTERM) and started again 5 s later with its autosave file;
2. the monitor is killed (SIGKILL) and started again 2 s later (``--full-refill``: when
   all but the last 10 s of the IOC's ring are blocks it has not seen);
3. PostgreSQL is stopped for 60 s (15 % of the duration if that is shorter), then started;
4. the monitor's Channel Access connections to the IOC are closed under it (``ss -K``).

Then the run is ended and the bench checks what matters most: every window counted once.
The database's helicity-sorted totals must equal the IOC's helicity-gated scalers (the
simulator's truth helicity, carried across the IOC restart by its autosave) channel by
channel; the recording holds each published window once, in order; the only windows missing
are those of the IOC's down time, reported as lost (``lost_windows``) with the
``missed_windows`` alarm raised.  Every 5 s the RSS of each process is sampled; the summary
gives start (after 60 s, or a fifth of the run), end and peak per process, and the peak of
each minute (printed every 5 minutes), so that growth shows.  Exit status 0
only if every check holds; ``--json`` prints the figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import cpu_seconds, write_channel_map
from bench_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE_JS,
    POINTS_JS,
    rss_mb,
    wait_listening,
)

from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port

IOC_PORT, MONITOR_PORT, REPEATER_PORT = free_port(), free_port(), free_port()
PORTS = [IOC_PORT, MONITOR_PORT]
apply(ca_environment(None, PORTS, REPEATER_PORT))

import epics  # noqa: E402  (libca reads the environment when it loads)
import numpy as np  # noqa: E402
from sqlalchemy import select  # noqa: E402
from support.pg_server import PostgresServer  # noqa: E402

from mupnc.db import alarms as alarm_store  # noqa: E402
from mupnc.db.block_codec import decode  # noqa: E402
from mupnc.db.models import RecordedBlock  # noqa: E402
from mupnc.db.session import make_engine, transaction  # noqa: E402
from mupnc.db.summary import helicity_totals, run_summary  # noqa: E402
from mupnc.orchestrate import Chain  # noqa: E402

PREFIX = "SOAK:"
SAMPLE_EVERY = 5.0
WARMUP_SECONDS = 10.0
"""A process's memory is sampled from this long after its (re)start on."""
IOC_DOWN_SECONDS = 5.0
MONITOR_DOWN_SECONDS = 2.0
REFILL_MARGIN = 10.0
"""With ``--full-refill`` the monitor is away for the IOC's ring duration less this (s):
its restart (start-up 4-9 s at MOLLER scale on the 2-core machine) reads back nearly the
whole ring, the worst case for its memory."""
PG_DOWN_SECONDS = 60.0


def recorded_seq(engine, run: int) -> np.ndarray:
    """Every recorded window's sequence number, in window order (read in batches)."""
    parts, after = [], -1
    while True:
        with transaction(engine) as session:
            rows = session.execute(
                select(RecordedBlock.payload, RecordedBlock.last_seq)
                .where(RecordedBlock.run == run, RecordedBlock.first_seq > after)
                .order_by(RecordedBlock.first_seq)
                .limit(500)
            ).all()
        if not rows:
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        parts += [decode(payload).seq for payload, _ in rows]
        after = rows[-1].last_seq


class Soak:
    """The chain's processes, their memory, and the chaos done to them."""

    def __init__(self, args: argparse.Namespace, folder: Path, db: str) -> None:
        self.args = args
        self.db = db
        self.chain = Chain(db=db)
        self.env = {
            "ioc": ca_environment(IOC_PORT, PORTS, REPEATER_PORT),
            "monitor": ca_environment(MONITOR_PORT, PORTS, REPEATER_PORT),
            "dashboard": ca_environment(None, PORTS, REPEATER_PORT),
        }
        channel_map = write_channel_map(folder, args.channels, beam_monitors=True)
        self.ioc_args = ["ioc", "--prefix", PREFIX, "--channel-map", str(channel_map)]
        self.ioc_args += ["--window-rate", str(args.window_rate), "--rate", "1e10"]
        self.ioc_args += ["--asymmetry", "1e-3", "--seed", "11"]
        self.ioc_args += ["--autosave", str(folder / "mupnc.ioc.autosave")]
        self.dashboard_port = free_port()
        self.rss: dict[str, list[tuple[float, float]]] = {}
        self.started: dict[str, float] = {}
        self.cpu: dict[str, list[float]] = {}  # name: [CPU seconds, wall seconds] sampled
        self._last_cpu: dict[int, tuple[float, float]] = {}  # pid: (wall, CPU) last sample
        self.events: list[str] = []
        self.t0 = time.monotonic()

    def start(self, name: str) -> None:
        args = {
            "ioc": self.ioc_args,
            "monitor": ["monitor", "--prefix", PREFIX],
            "dashboard": ["dashboard", "--port", str(self.dashboard_port), "--follow", PREFIX],
        }[name]
        self.chain.start(name, args, self.env[name])
        self.started[name] = time.monotonic() - self.t0

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f} s  {what}"
        self.events.append(line)
        print(line, flush=True)

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        for name, process in self.chain.processes.items():
            if process.poll() is None and now - self.started[name] >= WARMUP_SECONDS:
                with contextlib.suppress(FileNotFoundError):  # it just exited
                    self.rss.setdefault(name, []).append((now, rss_mb(process.pid)))
                    used = cpu_seconds(process.pid)
                    if process.pid in self._last_cpu:
                        then, before = self._last_cpu[process.pid]
                        totals = self.cpu.setdefault(name, [0.0, 0.0])
                        totals[0] += used - before
                        totals[1] += now - then
                    self._last_cpu[process.pid] = (now, used)

    def restart_ioc(self) -> None:
        self.note("chaos: IOC stopped (SIGTERM)")
        self.chain.signal("ioc", signal.SIGTERM)
        if self.chain.wait("ioc", 30) is None:
            raise RuntimeError("the IOC did not stop on SIGTERM")
        time.sleep(IOC_DOWN_SECONDS)
        self.start("ioc")
        self.note(f"chaos: IOC started again after {IOC_DOWN_SECONDS:.0f} s")

    def kill_monitor(self) -> None:
        down = MONITOR_DOWN_SECONDS
        if self.args.full_refill:  # all but the ring's last REFILL_MARGIN s: a full refill
            ring = epics.caget(PREFIX + "DAQ:RING_DEPTH", timeout=10)
            rate = epics.caget(PREFIX + "DAQ:BLOCK_RATE", timeout=10)
            down = ring / rate - REFILL_MARGIN
        self.note("chaos: monitor killed (SIGKILL)")
        self.chain.processes["monitor"].kill()
        self.chain.processes["monitor"].wait()
        time.sleep(down)
        self.start("monitor")
        self.note(f"chaos: monitor started again after {down:.0f} s")

    def drop_monitor_connections(self) -> None:
        pid = self.chain.processes["monitor"].pid
        result = subprocess.run(
            ["ss", "-K", "-t", "-p", "dst", "127.0.0.1", "dport", "=", str(IOC_PORT)],
            capture_output=True,
            text=True,
            check=False,
        )
        closed = sum(f"pid={pid}," in line for line in result.stdout.splitlines())
        if result.returncode != 0 or closed == 0:
            raise RuntimeError(f"ss -K closed none of the monitor's sockets: {result.stderr}")
        self.note(f"chaos: closed {closed} CA socket(s) of the monitor (ss -K)")


def run_soak(args: argparse.Namespace) -> dict:
    pg = PostgresServer()
    try:
        pg.start()
        return soak_on(pg, args)
    finally:
        pg.destroy()


def soak_on(pg: PostgresServer, args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    sink = BeaconSink(REPEATER_PORT)
    db = pg.create_database("soak")
    subprocess.run([sys.executable, "-m", "mupnc", "--db", db, "db", "upgrade"], check=True)
    soak = Soak(args, folder, db)
    pg_down = min(PG_DOWN_SECONDS, 0.15 * args.duration)
    chaos = [
        (0.2, "ioc", soak.restart_ioc),
        (0.4, "monitor", soak.kill_monitor),
        (0.6, "postgres", lambda: stop_postgres(soak, pg, pg_down)),
        (0.8, "socket", soak.drop_monitor_connections),
    ]
    chaos = [(at, act) for at, kind, act in chaos if args.chaos and kind in args.events]
    print(f"load average before: {os.getloadavg()}, cores {os.cpu_count()}", flush=True)
    browser = page = None
    try:
        soak.start("ioc")
        soak.start("monitor")
        soak.start("dashboard")
        wait_listening(soak.dashboard_port)
        run = int(wait_for(lambda: epics.caget(PREFIX + "RUN:NUMBER", timeout=2), 60))
        soak.note(f"run {run}: {args.window_rate:g} Hz x {args.channels} channels, {db}")
        if args.browser:
            browser, page = open_dashboard(soak.dashboard_port)
            soak.note("dashboard open in headless Chromium")
        start = time.monotonic()
        next_sample = start
        while (elapsed := time.monotonic() - start) < args.duration:
            if chaos and elapsed >= chaos[0][0] * args.duration:
                chaos.pop(0)[1]()
            failed = soak.chain.failed()
            if failed:
                raise RuntimeError(f"{failed} exited by itself")
            if time.monotonic() >= next_sample:
                soak.sample()
                next_sample += SAMPLE_EVERY
            if page is not None:
                page.wait_for_timeout(500)
            else:
                time.sleep(0.5)
        points = page.evaluate(POINTS_JS) if page is not None else None
        soak.note("ending the run")
        if not soak.chain.end_run():
            raise RuntimeError("the monitor did not finish the run cleanly")
        scalers = np.array([epics.caget(f"{PREFIX}DAQ:SCALER:{s}") for s in ("PLUS", "MINUS")])
        published_seq = int(epics.caget(PREFIX + "DAQ:SEQ", timeout=10))
        first_seq = int(epics.caget(PREFIX + "RUN:FIRST_SEQ", timeout=10))
    finally:
        if browser is not None:
            browser.close()
        soak.chain.shutdown()
        sink.close()
    return verdict(soak, make_engine(db), run, scalers, published_seq, first_seq, points)


def stop_postgres(soak: Soak, pg: PostgresServer, seconds: float) -> None:
    pg.stop()
    soak.note(f"chaos: PostgreSQL stopped for {seconds:.0f} s")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        soak.sample()
        time.sleep(min(SAMPLE_EVERY, max(0.0, end - time.monotonic())))
    pg.start()
    soak.note("chaos: PostgreSQL started again")


def open_dashboard(port: int):
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_function(IDLE_JS, timeout=120_000)
    return browser, page


def wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("the IOC did not come up")


def verdict(soak, engine, run, scalers, published_seq, first_seq, points) -> dict:
    with transaction(engine) as session:
        summary = run_summary(session, run)
        totals = np.array(helicity_totals(session, run, [c["name"] for c in summary["channels"]]))
        alarms = {a["name"] for a in alarm_store.alarm_list(session, run=run, closed=True)}
    seq = recorded_seq(engine, run)
    steps = np.diff(seq)
    gaps = steps[steps > 1] - 1
    published = published_seq + 1 - first_seq
    warmup = min(60.0, soak.args.duration / 5)
    memory = {}
    for name, samples in soak.rss.items():
        after = [mb for t, mb in samples if t >= warmup] or [mb for _, mb in samples]
        series = {}  # the highest sample of each minute, so growth shows between minutes
        for t, mb in samples:
            series[int(t // 60)] = max(series.get(int(t // 60), 0.0), mb)
        memory[name] = {
            "start_mb": after[0],
            "end_mb": after[-1],
            "peak_mb": max(after),
            "per_minute_peak_mb": [round(series[m], 1) for m in sorted(series)],
        }
    cpu = {name: 100 * used / wall for name, (used, wall) in soak.cpu.items() if wall > 0}
    checks = {
        "db_totals_equal_ioc_scalers": bool(np.array_equal(totals, scalers)),
        "each_window_recorded_once": bool(np.all(steps > 0)),
        "recorded_plus_lost_is_published": int(seq.size + gaps.sum()) == published
        and int(seq[0]) == first_seq
        and int(seq[-1]) == published_seq,
        "lost_windows_reported": summary["lost_windows"] == int(gaps.sum()),
        "lost_windows_alarmed": summary["lost_windows"] == 0 or "missed_windows" in alarms,
        "no_helicity_errors_but_missed": all(
            v == 0 for k, v in summary["helicity_errors"].items() if k != "missed_windows"
        ),
        "dashboard_received_points": points is None or points > 0,
    }
    if soak.args.chaos:
        checks["only_the_ioc_down_time_lost"] = gaps.size == int("ioc" in soak.args.events)
    return {
        "run": run,
        "duration_s": soak.args.duration,
        "window_rate_hz": soak.args.window_rate,
        "channels": soak.args.channels,
        "published_windows": published,
        "recorded_windows": int(seq.size),
        "lost_windows": summary["lost_windows"],
        "gaps": gaps.tolist(),
        "helicity_errors": summary["helicity_errors"],
        "state": summary["state"],
        "counts_total": float(scalers.sum()),
        "max_abs_count_difference": float(np.abs(totals - scalers).max()),
        "alarms_raised": sorted(alarms),
        "memory": memory,
        "cpu_percent": cpu,
        "events": soak.events,
        "checks": checks,
        "load_average_after": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of run")
    parser.add_argument("--window-rate", type=float, default=1920.0, help="windows per second")
    parser.add_argument("--channels", type=int, default=512, help="detector channels")
    parser.add_argument("--no-chaos", dest="chaos", action="store_false", help="a quiet soak")
    parser.add_argument("--no-browser", dest="browser", action="store_false", help="no Chromium")
    parser.add_argument(
        "--events",
        type=lambda text: set(text.split(",")),
        default={"ioc", "monitor", "postgres", "socket"},
        help="the chaos events done, comma-separated (default: ioc,monitor,postgres,socket)",
    )
    parser.add_argument(
        "--full-refill",
        action="store_true",
        help="keep the killed monitor away until its restart refills nearly the whole ring",
    )
    parser.add_argument("--json", action="store_true", help="figures as JSON on the last line")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up: chain, PostgreSQL
    result = run_soak(args)
    print(
        f"run {result['run']}: {result['published_windows']} windows published, "
        f"{result['recorded_windows']} recorded, {result['lost_windows']} lost "
        f"(gaps {result['gaps']}); largest count difference DB - IOC scalers "
        f"{result['max_abs_count_difference']:g} of {result['counts_total']:.3g} counts"
    )
    for name, m in result["memory"].items():
        print(
            f"{name:10s} RSS start {m['start_mb']:.0f} MB, end {m['end_mb']:.0f} MB, "
            f"peak {m['peak_mb']:.0f} MB; CPU {result['cpu_percent'].get(name, 0):.1f} % of a core"
        )
    every = 5  # minutes
    for name, m in result["memory"].items():
        points = m["per_minute_peak_mb"][::every]
        print(
            f"{name:10s} RSS peak (MB) every {every} min: " + " ".join(f"{x:.0f}" for x in points)
        )
    print(f"helicity errors: {result['helicity_errors']}; alarms: {result['alarms_raised']}")
    for check, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    print(f"load average after: {result['load_average_after']}")
    if args.json:
        print(json.dumps(result))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
