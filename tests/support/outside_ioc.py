"""A DAQ IOC written by someone else: EPICS base (pythonSoftIOC), from docs/daq-contract.md alone.

It imports nothing of mupnc: the block layout, the helicity generator, the PV names, types
and enum states are written here from the contract document, so that a monitor fed by it
shows the document is enough.  It simulates a fast-reversal A_LR run: four scatter
channels with Poisson counts ``muons * acceptance * (1 + h P A)``, ``h`` the actual
helicity, and serves cumulative scalers gated by ``h`` for the test to compare with.

``python outside_ioc.py --prefix P --run N [options]`` serves on the Channel Access port
of its environment (``EPICS_CAS_SERVER_PORT``), no pvAccess.  SIGINT ends the run on a
pattern boundary (``RUN:STATE`` ENDED) and keeps serving; SIGTERM exits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

MAGIC_HIGH = 0x6D75  # "mu"
"""Contract §2: the magic number is "mu" in the high 16 bits, the layout version below."""
PATTERNS = {"PAIR": [1, -1], "QUARTET": [1, -1, -1, 1], "OCTET": [1, -1, -1, 1, -1, 1, 1, -1]}
"""Contract §4 (thue-morse-64 left out); served in upper case: states match in any case."""
CHANNELS = [
    {"name": f"scat_{i}", "role": "scatter", "acceptance": 2.5e-4, "cos_theta": c}
    for i, c in enumerate((-0.75, -0.25, 0.25, 0.75))
]


class Generator:
    """Contract §4: the 30-bit LFSR, one pattern polarity per pattern number."""

    def __init__(self, seed: int) -> None:
        self.register, self.bits = seed & 0x3FFFFFFF, []

    def polarity(self, pattern: int) -> int:
        while len(self.bits) <= pattern:
            r = self.register
            new = (r >> 29 ^ r >> 28 ^ r >> 27 ^ r >> 6) & 1
            self.register = ((r << 1) | new) & 0x3FFFFFFF
            self.bits.append(1 if new else -1)
        return self.bits[pattern]


class Daq:
    """Simulated windows, packed and published as the contract says."""

    def __init__(self, args: argparse.Namespace, records: dict) -> None:
        self.args, self.records = args, records
        self.shape = PATTERNS.get(args.pattern.upper(), PATTERNS["QUARTET"])
        self.generator = Generator(args.helicity_seed)
        self.rng = np.random.default_rng(args.seed)
        self.stream_id = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF or 1
        self.next_seq = self.next_block = 0
        self.scalers = np.zeros((2, len(CHANNELS)))
        self.ending, self.ended = threading.Event(), threading.Event()

    def windows(self, n: int) -> dict:
        size, delay, a = len(self.shape), self.args.delay, self.args
        seq = np.arange(self.next_seq, self.next_seq + n)
        pattern, phase = seq // size, seq % size
        shape = np.array(self.shape)[phase]
        reported = np.array([self.generator.polarity(int(p)) for p in pattern]) * shape
        actual = np.array([self.generator.polarity(int(p) + delay) for p in pattern]) * shape
        muons = a.rate / a.window_rate * (1 + 1e-3 * self.rng.standard_normal(n))
        acceptance = np.array([c["acceptance"] for c in CHANNELS])
        expected = np.outer(muons * (1 + actual * a.polarization * a.asymmetry), acceptance)
        counts = self.rng.poisson(expected)
        flags = (phase == 0) * 1 | (phase % 2 == 0) * 2
        return dict(
            seq=seq,
            pattern_number=pattern,
            pattern_phase=phase,
            reported_helicity=reported,
            flags=flags,
            rotator_readback=actual,  # fast scheme: the Pockels cell = actual helicity
            beam_monitor=muons * (1 + 1e-4 * self.rng.standard_normal(n)),
            counts=counts,
            actual=actual,
        )

    def pack(self, w: dict) -> np.ndarray:
        """Contract §2: header, seven columns of n values, counts window-major, zeros."""
        n, c = len(w["seq"]), len(CHANNELS)
        wire = np.zeros(self.args.length)
        magic = MAGIC_HIGH << 16 | self.args.layout_version
        wire[:5] = (magic, self.stream_id, self.next_block, n, c)
        columns = ("seq", "pattern_number", "pattern_phase", "reported_helicity", "flags")
        columns += ("rotator_readback", "beam_monitor")
        for i, name in enumerate(columns):
            wire[5 + i * n : 5 + (i + 1) * n] = w[name]
        wire[5 + 7 * n : 5 + 7 * n + n * c] = w["counts"].reshape(-1)
        return wire

    def publish(self, n: int) -> None:
        """Contract §3: ring slot, then the block, then the block number."""
        r, w = self.records, self.windows(n)
        wire = self.pack(w)
        r[f"ring_{self.next_block % self.args.ring_depth}"].set(wire)
        self.scalers[0] += w["counts"][w["actual"] > 0].sum(axis=0)
        self.scalers[1] += w["counts"][w["actual"] < 0].sum(axis=0)
        r["scaler_plus"].set(self.scalers[0])
        r["scaler_minus"].set(self.scalers[1])
        r["seq"].set(int(w["seq"][-1]))
        r["block"].set(wire)
        r["block_number"].set(self.next_block)
        r["rotator_sp"].set(float(w["actual"][-1]))
        r["rotator_rbv"].set(float(w["actual"][-1]))
        self.next_seq += n
        self.next_block += 1

    def run(self) -> None:
        """Blocks at ``block_rate`` Hz with the windows due by the clock; on ``ending``, the
        rest of the pattern, then RUN:STATE ENDED."""
        a, size = self.args, len(self.shape)
        max_windows = 2 * math.ceil(a.window_rate / a.block_rate)
        start, tick = time.monotonic(), 0
        while True:
            tick += 1
            self.ending.wait(max(0.0, start + tick / a.block_rate - time.monotonic()))
            due = int((time.monotonic() - start) * a.window_rate) - self.next_seq
            if self.ending.is_set():
                due = -self.next_seq % size
            if due > 0:
                self.publish(min(due, max_windows))
            if self.ending.is_set() and self.next_seq % size == 0:
                break
        self.records["state"].set(2)  # ENDED
        self.ended.set()
        print(f"run {a.run} ended after {self.next_seq} windows", file=sys.stderr, flush=True)


def build(args: argparse.Namespace) -> dict:
    """Contract §5: the records, before iocInit."""
    from softioc import builder

    builder.SetDeviceName(args.prefix.rstrip(":"))
    patterns = [*PATTERNS, "THUE-MORSE-64"]
    served = args.pattern.upper() if args.pattern.upper() in patterns else args.pattern
    if served not in patterns:
        patterns.append(served)  # a state the contract does not know
    channel_map = json.dumps({"mode": "alr", "channels": CHANNELS})
    max_windows = 2 * math.ceil(args.window_rate / args.block_rate)
    args.length = 5 + max_windows * (7 + len(CHANNELS))
    zeros = np.zeros(args.length)
    r = {
        "block": builder.WaveformIn("DAQ:BLOCK", zeros),
        "block_number": builder.longIn("DAQ:BLOCK_NUMBER", initial_value=-1),
        "seq": builder.longIn("DAQ:SEQ", initial_value=-1),
        "ring_depth": builder.longIn("DAQ:RING_DEPTH", initial_value=args.ring_depth),
        "channel_map": builder.longStringIn("DAQ:CHANNEL_MAP", initial_value=channel_map),
        "scaler_plus": builder.WaveformIn("DAQ:SCALER:PLUS", np.zeros(len(CHANNELS))),
        "scaler_minus": builder.WaveformIn("DAQ:SCALER:MINUS", np.zeros(len(CHANNELS))),
        "consumed": builder.longOut("DAQ:CONSUMED", initial_value=-2),
        "number": builder.longIn("RUN:NUMBER", initial_value=args.run),
        "state": builder.mbbIn("RUN:STATE", "IDLE", "RUNNING", "ENDED", initial_value=0),
        "blind": builder.mbbIn("RUN:BLIND", "NO", "YES", initial_value=0),
        "pattern": builder.mbbIn("HEL:PATTERN", *patterns, initial_value=patterns.index(served)),
        "delay": builder.longIn("HEL:DELAY", initial_value=args.delay),
        "scheme": builder.mbbIn("HEL:SCHEME", "FAST", "SLOW", "KICK", initial_value=0),
        "window_rate": builder.aIn("HEL:WINDOW_RATE", initial_value=args.window_rate, EGU="Hz"),
        "polarization": builder.aIn("BEAM:POLARIZATION", initial_value=args.polarization),
        "rate": builder.aIn("BEAM:RATE", initial_value=args.rate, EGU="Hz"),
        "rate_sp": builder.aIn("BEAM:RATE_SP", initial_value=args.rate, EGU="Hz"),
        "beam_on": builder.mbbIn("BEAM:ON", "OFF", "ON", initial_value=1),
        "trip": builder.mbbIn("BEAM:TRIP", "OK", "TRIPPED", initial_value=0),
        "rotator_sp": builder.aIn("HEL:ROTATOR:SP", initial_value=1.0),
        "rotator_rbv": builder.aIn("HEL:ROTATOR:RBV", initial_value=1.0),
    }
    for slot in range(args.ring_depth):
        r[f"ring_{slot}"] = builder.WaveformIn(f"DAQ:RING:{slot:03d}", zeros)
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--pattern", default="QUARTET")
    p.add_argument("--delay", type=int, default=2)
    p.add_argument("--layout-version", type=int, default=2)
    p.add_argument("--block-rate", type=float, default=10.0)
    p.add_argument("--window-rate", type=float, default=240.0)
    p.add_argument("--ring-depth", type=int, default=256)
    p.add_argument("--rate", type=float, default=1e9)
    p.add_argument("--polarization", type=float, default=0.9)
    p.add_argument("--asymmetry", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--helicity-seed", type=int, default=0x2AAAAAAA)
    args = p.parse_args()

    from softioc import asyncio_dispatcher, builder, softioc

    records = build(args)
    builder.LoadDatabase()
    softioc.iocInit(asyncio_dispatcher.AsyncioDispatcher(), enable_pva=False)
    daq = Daq(args, records)
    quit_ = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: daq.ending.set())
    signal.signal(signal.SIGTERM, lambda *_: quit_.set())
    records["state"].set(1)  # RUNNING: the settings above are served

    def publish() -> None:
        try:
            daq.run()
        except BaseException:  # a dead publisher must not leave a RUNNING IOC behind
            import traceback

            traceback.print_exc()
            os._exit(1)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    print(f"serving run {args.run} with prefix {args.prefix}", file=sys.stderr, flush=True)
    while not quit_.wait(0.2):
        pass
    daq.ending.set()
    daq.ended.wait(5)
    sys.stderr.flush()
    os._exit(0)  # epicsExit from here can wedge on libca's teardown; nothing to save


if __name__ == "__main__":
    main()
