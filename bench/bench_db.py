"""Database figures: result-row inserts per second on SQLite and PostgreSQL, and the size
of the recording per window-channel against the raw integer size.

Run: .venv/bin/python bench/bench_db.py [--rows N]
PostgreSQL is a throw-away server started here (tests/support/pg_server.py; fsync off, as in the
tests), SQLite a file in a temporary folder (WAL, synchronous=NORMAL, as in production).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import bench_common  # noqa: F401  (tests/ on the path, for support.pg_server)
from sqlalchemy import insert
from support.pg_server import PostgresServer, ServerUnavailableError

from mupnc.daq.channel_map import Channel, ChannelMap
from mupnc.db.block_codec import decode, encode, raw_size
from mupnc.db.models import AsymmetryResult
from mupnc.db.session import create_schema, make_engine, transaction
from mupnc.db.store import allocate_run, upsert
from mupnc.sim.source import SourceConfig, WindowSource

BATCH = 10_000


def result_rows(run: int, n: int, offset: int = 0) -> list[dict]:
    """``n`` asymmetry-result rows: 512 channels per minirun, as for a MOLLER-sized detector."""
    return [
        dict(
            run=run,
            minirun=(offset + i) // 512,
            channel=f"ch{(offset + i) % 512:03d}",
            value=1e-4 + i * 1e-12,
            error=1e-5,
            n=9000,
            chi2_ndf=1.0,
        )
        for i in range(n)
    ]


def bench_inserts(url: str, rows: int) -> dict[str, float]:
    engine = make_engine(url)
    create_schema(engine)
    with transaction(engine) as session:
        runs = [allocate_run(session, source="sim", mode="alr", config={}) for _ in range(2)]

    def batches(run: int) -> list[list[dict]]:
        return [result_rows(run, BATCH, k) for k in range(0, rows, BATCH)]

    def measure(write, run: int) -> float:
        data = batches(run)
        start = time.perf_counter()
        for batch in data:
            with transaction(engine) as session:
                write(session, batch)
        return rows / (time.perf_counter() - start)

    keys = ("run", "minirun", "channel")
    figures = {
        "insert() executemany": measure(
            lambda s, b: s.execute(insert(AsymmetryResult), b), runs[0]
        ),
        "upsert (the monitor's path)": measure(
            lambda s, b: upsert(s, AsymmetryResult, b, keys), runs[1]
        ),
    }
    engine.dispose()
    return figures


def many_channels(n: int) -> ChannelMap:
    channels = [Channel(f"bin{i:03d}", "scatter", 2.5e-4, -1 + (2 * i + 1) / n) for i in range(n)]
    return ChannelMap("alr", tuple(channels))


def bench_recording() -> list[tuple]:
    """(configuration, window-channels, bytes per window-channel, ratio to raw, MB/s)."""
    cases = [
        ("A_LR 8 ch, 240 Hz, 20 Hz blocks", SourceConfig(mode="alr"), 12),
        ("A_FB 2 ch, 240 Hz, 20 Hz blocks", SourceConfig(mode="afb"), 12),
        ("PREX-like 190 ch, 240 Hz", SourceConfig(channel_map=many_channels(190)), 12),
        (
            "MOLLER-like 512 ch, 1920 Hz",
            SourceConfig(channel_map=many_channels(512), window_rate=1920.0),
            96,
        ),
    ]
    out = []
    for name, config, per_block in cases:
        source = WindowSource(config)
        blocks = [source.next_block_of(per_block).block for _ in range(100)]
        start = time.perf_counter()
        payloads = [encode(b) for b in blocks]
        seconds = time.perf_counter() - start
        for payload, block in zip(payloads, blocks, strict=True):
            assert decode(payload).counts.tobytes() == block.counts.tobytes()
        values = sum(b.counts.size for b in blocks)
        size, raw = sum(map(len, payloads)), sum(map(raw_size, blocks))
        out.append((name, values, size / values, size / raw, raw / seconds / 1e6))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per measurement")
    args = parser.parse_args()

    print(f"result-row inserts, {args.rows} rows in batches of {BATCH} (rows/s):")
    with tempfile.TemporaryDirectory() as folder:
        sqlite = bench_inserts(f"sqlite:///{Path(folder) / 'bench.db'}", args.rows)
    for method, rate in sqlite.items():
        print(f"  SQLite      {method:<38} {rate:>12,.0f}")
    try:
        with PostgresServer() as server:
            postgres = bench_inserts(server.create_database("bench"), args.rows)
        for method, rate in postgres.items():
            print(f"  PostgreSQL  {method:<38} {rate:>12,.0f}")
    except ServerUnavailableError as err:
        print(f"  PostgreSQL  skipped: {err}")

    print("recording (db/block_codec.py), 100 blocks each:")
    print(f"  {'configuration':<34} {'bytes/window-channel':>21} {'x raw':>7} {'encode MB/s':>12}")
    for name, _values, per_value, ratio, speed in bench_recording():
        print(f"  {name:<34} {per_value:>21.2f} {ratio:>7.2f} {speed:>12.0f}")
    print("  raw = per-window fields at their WindowBlock dtypes + counts as 32-bit words")


if __name__ == "__main__":
    main()
