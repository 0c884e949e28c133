"""Fuzz: 10,000 random bad puts to every writable PV of a running IOC, over real CA.

Every writable PV is derived from the IOC's own PV database.  The bad values come from a
fixed seed: NaN, +-inf, numbers outside DRVL..DRVH, out-of-range and non-integral enum
indices, block numbers never published, empty, garbage and long strings, and arrays of up
to 1e5 elements.  Three clients send them: pyepics ``caput(wait=True)`` in the PV's own
type, libca (through pyepics) in another DBR type (what ``caput PV text`` sends), and
caproto for what libca cannot send (arrays to scalars, long char arrays).  Writes are
paced at :data:`MAX_RATE` puts/s.

Afterwards the IOC must be alive, every setpoint must hold its initial value, its log must
hold one refusal line per put and no traceback, and the window stream must be the one an
undisturbed IOC publishes.  Block boundaries depend on timing, and so do the random draws
of counts and beam monitor (they follow the block partition), so the stream is compared
where it is partition-independent: every block 0..last (missed updates refilled from the
ring), contiguous sequence numbers, and pattern numbers, phases, reported helicity, flags
and rotator readback equal to a fresh :class:`WindowSource` with the same seed.  The rest
is checked for what it must satisfy: the beam monitor of every window agrees with the
unchanged rate setpoint (no put got through to the beam), and the IOC's helicity-gated
scalers equal the sum of the published counts exactly (every window counted once).
"""

from __future__ import annotations

import math
import queue
import re
import time
from dataclasses import dataclass

import epics
import numpy as np
import pytest
from caproto import ChannelType
from epics import dbr
from support.chains import ioc_process
from support.waiting import wait_for

from mupnc.cli import build_parser
from mupnc.daq.blocks import CONSUMER_HAS_RUN, WindowBlock
from mupnc.ioc.server import build_ioc
from mupnc.runs import source_config
from mupnc.sim.faults import FAULT_KINDS
from mupnc.sim.source import WindowSource

pytestmark = pytest.mark.ca

SEED = 20_260_610
WRITES = 10_000
MAX_RATE = 400.0
"""Puts per second at most (caproto 1.3.0 must not face an unthrottled writer)."""
SLICES = 20
"""The fuzz runs in slices; after each, blocks must have arrived and setpoints held."""
HUGE = 100_000
"""Elements of the largest arrays written to scalar PVs."""
HUGE_WRITES = 100
LONG_MAX_VALID = 10**6
"""Block numbers up to this may be acknowledged legitimately and are never sent (the run
publishes far fewer blocks); larger ones are bad."""
IOC_ARGS = ["--window-rate", "480", "--seed", "11", "--block-rate", "20"]


def _parse(value: str | float) -> float | None:
    """A put's value as a number, as the IOC would read it (text via float())."""
    if not isinstance(value, str):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """A writable PV and what a valid put to it would be (such puts are never sent)."""

    name: str
    kind: str  # "double", "enum" or "long"
    states: tuple[str, ...] = ()
    low: float = -math.inf
    high: float = math.inf

    def accepts(self, value: str | float) -> bool:
        if self.kind == "enum" and isinstance(value, str) and value in self.states:
            return True
        number = _parse(value)
        if number is None or not math.isfinite(number):
            return False
        if self.kind == "double":
            return self.low <= number <= self.high
        upper = len(self.states) - 1 if self.kind == "enum" else LONG_MAX_VALID
        lower = 0 if self.kind == "enum" else -1
        if self.kind == "long" and number == CONSUMER_HAS_RUN:  # a consumer with the whole run
            return True
        return number.is_integer() and lower <= number <= upper


def writable_targets(prefix: str) -> list[Target]:
    """Every writable PV of the IOC, from its own PV database."""
    config = source_config(build_parser().parse_args(["ioc", *IOC_ARGS]))
    targets = []
    for name, channel in build_ioc(prefix, config, 0).pvdb.items():
        if channel.pvspec.read_only:
            continue
        kind = {ChannelType.DOUBLE: "double", ChannelType.ENUM: "enum", ChannelType.LONG: "long"}
        assert channel.data_type in kind, f"{name}: no bad values known for {channel.data_type}"
        targets.append(
            Target(
                name,
                kind[channel.data_type],
                tuple(getattr(channel, "enum_strings", ())),
                getattr(channel, "lower_ctrl_limit", -math.inf),
                getattr(channel, "upper_ctrl_limit", math.inf),
            )
        )
    return targets


NATIVE = {"double": dbr.DOUBLE, "enum": dbr.ENUM, "long": dbr.LONG}
"""The DBR type each kind of writable PV has."""


class BadValues:
    """Bad puts from a fixed seed: ``(transport, ftype, value)`` for a target."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.huge_left = HUGE_WRITES

    def _until_bad(self, target: Target, draw) -> object:
        while True:
            value = draw()
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if not target.accepts(text):
                return value

    def number(self, target: Target) -> float:
        rng = self.rng
        pool = [
            lambda: math.nan,
            lambda: math.inf,
            lambda: -math.inf,
            lambda: float(rng.choice([1e300, -1e300, 1e-300, 0.0, -0.0])),
            lambda: float(rng.standard_normal() * 10.0 ** rng.uniform(-10, 40)),
            lambda: float(rng.integers(-1000, 1000)) + 0.5,
            lambda: target.low * (1 - 1e-9) - 1e-9 if math.isfinite(target.low) else -1e40,
            lambda: target.high * (1 + 1e-9) + 1e-9 if math.isfinite(target.high) else 1e40,
        ]
        return self._until_bad(target, lambda: pool[rng.integers(len(pool))]())

    def integer(self, target: Target, low: int, high: int) -> int:
        rng = self.rng
        pool = [
            lambda: int(rng.integers(low, high + 1)),
            lambda: int(rng.integers(max(low, -100), min(high, 100) + 1)),
            lambda: int(rng.choice([low, high, -2, 2])) if low < 0 else high,
        ]
        return self._until_bad(target, lambda: pool[rng.integers(len(pool))]())

    def text(self, target: Target) -> bytes:
        rng = self.rng

        def garbage() -> bytes:
            return bytes(rng.integers(1, 256, rng.integers(1, 40)).astype(np.uint8))

        def printable() -> bytes:
            return bytes(rng.integers(32, 127, rng.integers(1, 40)).astype(np.uint8))

        def near_state() -> bytes:
            state = str(rng.choice(target.states or ("ON",)))
            return rng.choice([state.lower(), f" {state}", f"{state} ", state + "x"]).encode()

        pool = [
            lambda: b"",
            lambda: b" ",
            garbage,
            printable,
            near_state,
            lambda: rng.choice([b"nan", b"inf", b"-inf", b"1e999", b"5e8Hz", b"0x10"]),
            lambda: repr(self.number(target)).encode()[:39],
        ]
        return self._until_bad(target, lambda: pool[rng.integers(len(pool))]())

    def put(self, target: Target) -> tuple[str, int | ChannelType, object]:
        """One bad put: ``caput`` (native type), ``as`` (libca, another DBR type) or ``wire``
        (caproto: arrays, long char arrays)."""
        rng = self.rng
        native = NATIVE[target.kind]
        if self.huge_left and rng.random() < HUGE_WRITES / WRITES * 1.5:
            self.huge_left -= 1
            return "wire", ChannelType.DOUBLE, rng.standard_normal(HUGE) * 1e8
        roll = rng.random()
        if roll < 0.5:
            ftype = native
        elif roll < 0.85:
            others = [dbr.STRING, dbr.DOUBLE, dbr.LONG, dbr.ENUM]
            if target.kind == "long":  # every DBR_ENUM value (0..65535) is a block number
                others.remove(dbr.ENUM)
            ftype = int(rng.choice(others))
        else:
            return self.wire(target)
        if ftype == dbr.STRING:
            value: object = self.text(target)
        elif ftype == dbr.DOUBLE:
            value = self.number(target)
        elif ftype == dbr.LONG:
            value = self.integer(target, -(2**31), 2**31 - 1)
        else:
            value = self.integer(target, 0, 2**16 - 1)
        return ("caput" if ftype == native else "as"), ftype, value

    def wire(self, target: Target) -> tuple[str, ChannelType, object]:
        rng = self.rng
        n = int(rng.integers(2, 1000))
        kind = rng.integers(4)
        if kind == 0:
            return "wire", ChannelType.DOUBLE, rng.standard_normal(n) * 1e9
        if kind == 1:
            return "wire", ChannelType.LONG, rng.integers(-(2**31), 2**31, n, dtype=np.int32)
        if kind == 2:
            return "wire", ChannelType.CHAR, bytes(rng.integers(1, 256, n * 10).astype(np.uint8))
        return "wire", ChannelType.STRING, [self.text(target).decode("latin-1")] * min(n, 20)


class StreamCollector:
    """Every published block, by number: the DAQ:BLOCK subscription (its callback only
    enqueues), gaps refilled from the IOC's ring."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.depth = int(epics.caget(prefix + "DAQ:RING_DEPTH", timeout=5))
        self.blocks: dict[int, WindowBlock] = {}
        self.refilled = 0
        self.lost: list[int] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pv = epics.PV(prefix + "DAQ:BLOCK", auto_monitor=True, callback=self._on_block)

    def _on_block(self, value, **_) -> None:
        self._queue.put(np.array(value, copy=True))

    def drain(self) -> None:
        """Take queued blocks, refill gaps from the ring."""
        while True:
            try:
                wire = self._queue.get_nowait()
            except queue.Empty:
                break
            if wire.any():  # the PV's initial all-zero value is no block
                block = WindowBlock.unpack(wire)
                self.blocks[block.block_number] = block
        if self.blocks:
            for number in set(range(max(self.blocks))) - set(self.blocks) - set(self.lost):
                self._refill(number)

    def _refill(self, number: int) -> None:
        slot = f"{self.prefix}DAQ:RING:{number % self.depth:03d}"
        block = WindowBlock.unpack(np.asarray(epics.caget(slot, timeout=5)))
        if block.block_number == number:
            self.blocks[number] = block
            self.refilled += 1
        else:
            self.lost.append(number)

    def close(self) -> None:
        self._pv.clear_callbacks()
        self._pv.disconnect()


def _read(target: Target) -> object:
    return epics.caget(target.name, as_string=target.kind == "enum", timeout=5)


def _send(ctx_pvs: dict, pyepics_pvs: dict, target: Target, put) -> None:
    transport, ftype, value = put
    if transport == "caput":
        epics.caput(target.name, value, wait=True, timeout=5)
    elif transport == "as":
        epics.ca.put(pyepics_pvs[target.name].chid, value, wait=True, timeout=5, ftype=ftype)
    else:  # caproto gets no put-callback reply for a refused put: the log counts them
        ctx_pvs[target.name].write(value, data_type=ftype, wait=False)


@pytest.fixture
def fuzzed_ioc(ioc_prefix, ca_env, tmp_path):
    log_path, db = tmp_path / "ioc.log", f"sqlite:///{tmp_path / 'x.db'}"
    with ioc_process(ioc_prefix, ca_env["ioc"], log_path, db, *IOC_ARGS) as process:
        yield process, log_path


def test_ten_thousand_bad_puts_are_refused_and_the_stream_is_unchanged(ioc_prefix, fuzzed_ioc):
    from caproto.threading.client import Context

    process, log_path = fuzzed_ioc
    targets = writable_targets(ioc_prefix)
    names = {t.name.removeprefix(ioc_prefix) for t in targets}
    expected = {"BEAM:RATE_SP", "BEAM:ON", "RUN:STOP", "DAQ:CONSUMED"}
    assert expected | {f"RUN:FAULT:{kind.upper()}" for kind in FAULT_KINDS} <= names
    initial = {t.name: _read(t) for t in targets}
    assert initial[ioc_prefix + "BEAM:RATE_SP"] == 1e8
    assert initial[ioc_prefix + "RUN:STOP"] == "-"

    collector = StreamCollector(ioc_prefix)
    pyepics_pvs = {t.name: epics.get_pv(t.name) for t in targets}
    context = Context()
    ctx_pvs = {pv.name: pv for pv in context.get_pvs(*[t.name for t in targets])}
    for pv in ctx_pvs.values():
        pv.wait_for_connection(timeout=10)
    bad = BadValues(SEED)
    rng = np.random.default_rng(SEED + 1)
    sent: dict[str, int] = {"caput": 0, "as": 0, "wire": 0}
    arrivals = []
    started = time.monotonic()
    try:
        for slice_ in range(SLICES):
            before = len(collector.blocks)
            for i in range(WRITES // SLICES):
                k = slice_ * (WRITES // SLICES) + i
                time.sleep(max(0.0, started + k / MAX_RATE - time.monotonic()))
                target = targets[rng.integers(len(targets))]
                put = bad.put(target)
                _send(ctx_pvs, pyepics_pvs, target, put)
                sent[put[0]] += 1
                if i % 100 == 99:
                    collector.drain()
            collector.drain()
            arrivals.append(len(collector.blocks) - before)
            held = {t.name: _read(t) for t in targets}
            assert held == initial, f"a bad put got through in slice {slice_}"
        elapsed = time.monotonic() - started
        assert process.poll() is None, "the IOC died under the fuzz"
        assert all(arrivals), f"no block arrived during some slice: {arrivals}"

        # end the run with a valid put: setpoints still work after the fuzz
        epics.caput(ioc_prefix + "RUN:STOP", "STOP", wait=True, timeout=5)
        deadline = time.monotonic() + 20  # for the end and the last blocks together
        wait_for(
            lambda: epics.caget(ioc_prefix + "RUN:STATE", as_string=True, timeout=5) == "ENDED",
            20,
            "the run to end",
        )
        last = int(epics.caget(ioc_prefix + "DAQ:BLOCK_NUMBER", timeout=5))

        def caught_up() -> bool:
            collector.drain()
            return max(collector.blocks, default=-1) >= last

        wait_for(caught_up, deadline - time.monotonic(), f"block {last}", step=0.05)
        collector.drain()
        plus = epics.caget(ioc_prefix + "DAQ:SCALER:PLUS", timeout=5)
        minus = epics.caget(ioc_prefix + "DAQ:SCALER:MINUS", timeout=5)
    finally:
        collector.close()
        context.disconnect()
    print(
        f"\nfuzz: {sum(sent.values())} bad puts {sent} in {elapsed:.1f} s "
        f"({sum(sent.values()) / elapsed:.0f} puts/s); {len(collector.blocks)} blocks, "
        f"{collector.refilled} refilled from the ring"
    )

    # every put refused, in one line each, no traceback
    def refusals() -> int:
        return log_path.read_text().count("refused put to ")

    wait_for(
        lambda: refusals() >= WRITES,
        10,
        lambda: f"{WRITES} refusals logged (have {refusals()})",
        step=0.2,
    )
    log = log_path.read_text()
    assert log.count("refused put to ") == WRITES
    assert "Traceback" not in log
    refused_names = set(re.findall(r"refused put to (\S+) by ", log))
    assert refused_names == {t.name for t in targets}

    # the stream: every block, contiguous windows, the undisturbed truth
    assert not collector.lost, f"blocks lost (ring overwritten): {collector.lost[:10]}"
    assert sorted(collector.blocks) == list(range(last + 1))
    blocks = [collector.blocks[n] for n in range(last + 1)]
    seq = np.concatenate([b.seq for b in blocks])
    np.testing.assert_array_equal(seq, np.arange(seq.size))
    config = source_config(build_parser().parse_args(["ioc", *IOC_ARGS]))
    truth = WindowSource(config).next_block_of(seq.size)
    partition_free = ("pattern_number", "pattern_phase", "reported_helicity", "flags")
    for field in (*partition_free, "rotator_readback"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(b, field) for b in blocks]), getattr(truth.block, field)
        )

    # beam: every window at the unchanged rate (jitter 1 %: 7 sigma per window, 5 on the mean)
    gate = 1.0 / config.window_rate - config.t_settle
    x = np.concatenate([b.beam_monitor for b in blocks]) / (config.muon_rate * gate) - 1.0
    sigma = math.hypot(config.intensity_jitter, config.bcm_resolution)
    assert np.abs(x).max() < 7 * sigma
    assert abs(x.mean()) < 5 * sigma / math.sqrt(x.size)

    # scalers gated by the actual helicity equal the published counts: every window once
    counts = np.concatenate([b.counts for b in blocks])[
        :, config.resolved_channel_map().detector_columns
    ]
    actual = truth.actual_helicity
    np.testing.assert_array_equal(plus, counts[actual > 0].sum(axis=0))
    np.testing.assert_array_equal(minus, counts[actual < 0].sum(axis=0))
