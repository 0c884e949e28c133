"""Window to screen: how old the newest point of the running asymmetry is on the shifter page.

Run: .venv/bin/python bench/bench_latency.py [--duration 120] [--every 0.1]

The chain runs as in production: ``mupnc demo`` (IOC, monitor and dashboard processes,
SQLite in a temporary folder; the dashboard follows the monitor's result PVs), or with
``--no-follow`` ``mupnc demo --no-dashboard`` and ``mupnc dashboard --no-follow`` (the
database alone, polled once a second).  One headless Chromium tab opens the shifter page;
a timer in the page samples, every ``--every`` seconds, the wall clock (``Date.now()``)
minus the newest plotted time of the running asymmetry (database points and the newest
result PV point: the time of the monitor's result, which includes every window received
until then).  Samples fall at
random phases of the monitor's and the dashboard's cycles, so their distribution is what a
shifter sees; the median, p95 and maximum are printed, with the machine's load.  Browser
and servers share the machine's clock (one host).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC

import numpy as np
from bench_dashboard import CHROMIUM, CHROMIUM_ARGS, IDLE_JS, free_port, mupnc, stop, wait_listening
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError

from mupnc.db.models import Run

SAMPLE_JS = """([every, start]) => {
    window.latency = [];
    const source = Bokeh.documents[0].get_model_by_name('asym_source');
    const live = Bokeh.documents[0].get_model_by_name('asym_live_source');
    window.setInterval(() => {
        const x = [...source.data.x, ...(live ? live.data.x : [])];  // s since the start
        if (x.length > 0) window.latency.push(Date.now() - start - 1000 * Math.max(...x));
    }, every);
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds sampled")
    parser.add_argument("--every", type=float, default=0.1, help="sampling interval (s)")
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="the dashboard shows only the database (polled once a second), as before 0.25 s "
        "result PVs",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = tempfile.mkdtemp(prefix="bench_latency_")
    db, port = f"sqlite:///{folder}/bench.db", free_port()
    print(f"load average before: {os.getloadavg()}, cores {os.cpu_count()}")
    duration = ["--duration", str(args.duration + 120)]
    if args.no_follow:
        chain = mupnc(db, "demo", "--no-dashboard", *duration)
    else:  # the demo's own dashboard follows its monitor's result PVs
        chain = mupnc(db, "demo", "--port", str(port), *duration)
    server = None
    try:
        start = wait_for_first_result(db)
        if args.no_follow:
            server = mupnc(db, "dashboard", "--port", str(port), "--no-follow")
        wait_listening(port)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(IDLE_JS, timeout=120_000)
            page.wait_for_function(
                "() => Bokeh.documents[0].get_model_by_name('asym_source').data.x.length > 0",
                timeout=120_000,
            )
            page.evaluate(SAMPLE_JS, [args.every * 1000, start * 1000])
            page.wait_for_timeout(args.duration * 1000)
            ages = np.array(page.evaluate("() => window.latency")) / 1000.0
            browser.close()
    finally:
        if server is not None:
            stop(server)
        stop(chain)
    median, p95 = np.percentile(ages, [50, 95])
    print(
        f"{ages.size} samples over {args.duration:g} s: age of the newest plotted point "
        f"median {median:.2f} s, p95 {p95:.2f} s, max {ages.max():.2f} s"
    )
    print(f"load average after: {os.getloadavg()}")
    return 0


def wait_for_first_result(db: str, timeout: float = 120.0) -> float:
    """Wait until the demo's monitor has written its first result (the dashboard then opens
    on the live run); the run's start (Unix seconds), the origin of the plotted times."""
    engine = create_engine(db)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as connection:
                    if connection.execute(text("SELECT count(*) FROM result_snapshots")).scalar():
                        run = connection.execute(select(Run.start).order_by(Run.number.desc()))
                        return run.scalars().first().replace(tzinfo=UTC).timestamp()
            except OperationalError:  # the schema is not there yet
                pass
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise TimeoutError("the demo wrote no result")


if __name__ == "__main__":
    sys.exit(main())
