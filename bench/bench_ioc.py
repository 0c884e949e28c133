"""IOC throughput over real Channel Access on loopback: lost blocks, IOC CPU, latency.

Starts ``mupnc ioc`` as a subprocess with an N-channel A_LR channel map, subscribes to
``DAQ:BLOCK`` from a pyepics client (the callback only enqueues), and after the warm-up
counts for ``--duration`` seconds:

* blocks published (from the IOC's block numbers) and blocks the subscriber missed;
* IOC CPU (user + system, from /proc, in % of one core) and peak RSS;
* latency = client receive time - the IOC's CA timestamp of the update (median, p99).

Usage: ``python bench/bench_ioc.py [--duration 60] [--channels 512] [--rates 1920 19200]``
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import cpu_seconds, write_channel_map

from mupnc.epics_env import BeaconSink, apply, ca_environment, free_port

IOC_PORT, CLIENT_PORT, REPEATER_PORT = free_port(), free_port(), free_port()
apply(ca_environment(None, [IOC_PORT], REPEATER_PORT))

import epics  # noqa: E402  (libca reads the environment when it loads)

from mupnc.daq.blocks import WindowBlock  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(window_rate: float, n_channels: int, duration: float, warmup: float = 5.0) -> dict:
    prefix = f"BENCH{int(window_rate)}:"
    with tempfile.TemporaryDirectory() as tmp:
        channel_map = write_channel_map(Path(tmp), n_channels)
        env = {**os.environ, **ca_environment(IOC_PORT, [IOC_PORT], REPEATER_PORT)}
        cmd = [sys.executable, "-m", "mupnc", "--db", f"sqlite:///{tmp}/bench.db", "ioc"]
        cmd += ["--prefix", prefix, "--run", "1", "--window-rate", str(window_rate)]
        cmd += ["--rate", "1e9", "--channel-map", str(channel_map)]
        ioc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        arrivals: queue.SimpleQueue = queue.SimpleQueue()
        try:
            pv = epics.PV(
                prefix + "DAQ:BLOCK",
                auto_monitor=True,
                callback=lambda value, timestamp, **_: arrivals.put(
                    (time.time(), timestamp, value)
                ),
            )
            if not pv.wait_for_connection(timeout=30):
                raise RuntimeError(f"IOC did not come up: {ioc.stderr.read().decode()[-2000:]}")
            time.sleep(warmup)
            while not arrivals.empty():
                arrivals.get()
            cpu0, t0 = cpu_seconds(ioc.pid), time.monotonic()
            received: list[tuple[float, float, int, int]] = []
            while time.monotonic() - t0 < duration:
                try:
                    now, stamp, value = arrivals.get(timeout=0.5)
                except queue.Empty:
                    continue
                block = WindowBlock.unpack(np.asarray(value))
                received.append((now, stamp, block.block_number, block.n_windows))
            cpu = (cpu_seconds(ioc.pid) - cpu0) / (time.monotonic() - t0)
            rss = peak_rss_mb(ioc.pid)
            pv.clear_callbacks()
            pv.disconnect()
        finally:
            ioc.terminate()
            ioc.wait(timeout=30)
    numbers = np.array([r[2] for r in received])
    published = int(numbers.max() - numbers.min() + 1) if numbers.size else 0
    latency = np.array([r[0] - r[1] for r in received])
    windows = sum(r[3] for r in received)
    return {
        "window_rate_hz": window_rate,
        "channels": n_channels,
        "seconds": duration,
        "blocks_published": published,
        "blocks_lost": published - len(np.unique(numbers)),
        "windows_received": windows,
        "values_per_s": windows * n_channels / duration,
        "ioc_cpu_percent": 100 * cpu,
        "ioc_peak_rss_mb": rss,
        "latency_median_ms": 1e3 * float(np.median(latency)) if latency.size else float("nan"),
        "latency_p99_ms": 1e3 * float(np.percentile(latency, 99)) if latency.size else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per rate")
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--rates", type=float, nargs="+", default=[1920.0, 19200.0])
    args = parser.parse_args()
    sink = BeaconSink(REPEATER_PORT)
    try:
        for rate in args.rates:
            result = measure(rate, args.channels, args.duration)
            print(
                "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                ),
                flush=True,
            )
    finally:
        sink.close()


if __name__ == "__main__":
    main()
