"""Screenshots of the shifter page for the docs, from a running demo (``make screenshots``).

Starts ``mupnc demo`` (seed 1, the default run, its own database in a temporary folder, a
free dashboard port and free Channel Access ports), opens the shifter page in Debian's
headless Chromium (Playwright, as ``tests/test_dashboard_browser.py``), waits until the
page shows complete miniruns (at 240 Hz quartets a minirun of 9000 patterns is 150 s of
data), and writes PNGs, 1400 px wide, to ``docs/img/``:

* ``shifter-page.png``: the whole page, a clean run;
* ``panel-asymmetry.png``, ``panel-miniruns.png``, ``panel-beam.png``: the main panels;
* ``panel-alarm.png``: the alarm banner and table after a ``stuck_helicity`` fault the
  demo injects once the clean shots are taken.

Takes about 7 minutes. ``--miniruns N`` waits for N ≥ 2 complete miniruns (default 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from mupnc.epics_env import free_port

IMG = Path(__file__).resolve().parent / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
WIDTH, HEIGHT = 1400, 900
MINIRUN_SECONDS = 150.0
"""Seconds of data per minirun of the default demo (9000 quartets at 240 Hz)."""
IDLE_JS = (
    "() => window.Bokeh !== undefined && Bokeh.documents.length > 0"
    " && Bokeh.documents.every(d => d.is_idle)"
)
MODEL = "Bokeh.documents[0].get_model_by_name"
RECT_JS = """([name, up]) => {
    let view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name(name));
    for (let i = 0; i < up; i++) view = view.parent;
    const r = view.el.getBoundingClientRect();
    return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
}"""
PANELS = {
    "panel-asymmetry": [("asym_plot", 1), ("result_box", 0)],
    "panel-miniruns": [("helicity_state", 2)],
    "panel-beam": [("window_rate_plot", 2)],
}
"""Image -> (named model, how many layout levels up) whose union it shows."""
ALARMS = [("alarm_banner", 0), ("alarm_table", 1)]


def wait_listening(port: int, demo: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            raise SystemExit(f"the demo stopped (exit {demo.returncode}) before serving")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise SystemExit(f"no dashboard on port {port} after {timeout:.0f} s")


def shrink(path: Path) -> None:
    """Rewrite the PNG with a 256-colour palette (a third of the size; a page of flat
    colours and thin lines keeps its look)."""
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def shoot(page: Page, name: str, parts: list[tuple[str, int]], margin: int = 4) -> None:
    """A PNG of the smallest rectangle holding ``parts`` (named models, levels up)."""
    rects = [page.evaluate(RECT_JS, [model, up]) for model, up in parts]
    left = max(0, min(r[0] for r in rects) - margin)
    top = max(0, min(r[1] for r in rects) - margin)
    right = min(WIDTH, max(r[0] + r[2] for r in rects) + margin)
    bottom = max(r[1] + r[3] for r in rects) + margin
    clip = {"x": left, "y": top, "width": right - left, "height": bottom - top}
    page.screenshot(path=IMG / f"{name}.png", clip=clip, full_page=True)
    shrink(IMG / f"{name}.png")
    print(f"wrote docs/img/{name}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miniruns", type=int, default=2, help="complete miniruns to wait for")
    args = parser.parse_args()
    if args.miniruns < 2:
        parser.error("--miniruns: at least 2 (chi2/ndf and the pulls need two)")
    IMG.mkdir(exist_ok=True)
    fault_at = MINIRUN_SECONDS * args.miniruns + 45
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{Path(folder) / 'screenshots.db'}"
        command = [sys.executable, "-m", "mupnc", "--db", db, "demo", "--seed", "1"]
        command += ["--port", str(port), "--duration", str(fault_at + 120)]
        command += ["--inject", f"stuck_helicity@{fault_at:g}"]
        log = (Path(folder) / "demo.log").open("w")
        demo = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            wait_listening(port, demo)
            take(port, args.miniruns, fault_at)
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                demo.kill()
    return 0


def settle(page: Page) -> None:
    """Let the newest tick's redraw finish (Bokeh idle; on a busy machine the page may
    never be idle between 1 s ticks, then after 10 s anyway)."""
    page.wait_for_timeout(2000)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(IDLE_JS, timeout=10_000)


def take(port: int, miniruns: int, fault_at: float) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function(IDLE_JS, timeout=60_000)
        print(f"waiting for {miniruns} complete miniruns (~{MINIRUN_SECONDS * miniruns:.0f} s)")
        wait_ms = int((MINIRUN_SECONDS * miniruns + 120) * 1000)
        done = (
            f"(({MODEL}('result_box').text.match(/\\((\\d+) complete miniruns\\)/) || [0, 0])[1]"
            f" >= {miniruns})"
        )
        page.wait_for_function(f"() => {done}", timeout=wait_ms, polling=1000)
        settle(page)
        page.screenshot(path=IMG / "shifter-page.png", full_page=True)
        shrink(IMG / "shifter-page.png")
        print("wrote docs/img/shifter-page.png")
        for name, parts in PANELS.items():
            shoot(page, name, parts)
        print(f"waiting for the stuck_helicity fault at {fault_at:g} s into the run")
        banner = f"{MODEL}('alarm_banner').text != 'No active alarms'"
        page.wait_for_function(f"() => {banner}", timeout=240_000, polling=1000)
        settle(page)
        shoot(page, "panel-alarm", ALARMS)
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
