"""Attaching to a running demo as a user does: ``mupnc demo --ca-port PORT`` prints where its
CA servers are and a ``caget`` example; a client in a fresh process with only the printed
environment reads the example's PVs, and every PV ``mupnc pvs`` lists, from the demo."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
from support.ca_client import caget_elsewhere
from support.cli import mupnc
from support.waiting import wait_for

from mupnc.epics_env import free_port, port_free, udp_port_free

pytestmark = pytest.mark.ca

BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def free_pair() -> int:
    """A port P with P and P+1 free on loopback (TCP and UDP)."""
    while True:
        base = free_port()
        if base < 65535 and all(port_free(p) and udp_port_free(p) for p in (base, base + 1)):
            return base


def expand(name: str) -> list[str]:
    """The PVs of a listed name: a folded family ``A:{000..399}`` is 400 of them."""
    found = BRACES.search(name)
    if found is None:
        return [name]
    first, last = found.groups()
    head, tail = name[: found.start()], name[found.end() :]
    return [f"{head}{n:0{len(first)}d}{tail}" for n in range(int(first), int(last) + 1)]


def assignments(words: list[str]) -> dict[str, str]:
    return dict(word.split("=", 1) for word in words)


def test_a_client_attaches_to_the_demo_from_what_it_prints(tmp_path) -> None:
    base = free_pair()
    own = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    log = tmp_path / "demo.log"
    command = [sys.executable, "-m", "mupnc", "--db", f"sqlite:///{tmp_path / 'd.db'}", "demo"]
    with open(log, "w") as err:
        demo = subprocess.Popen(
            [*command, "--no-dashboard", "--ca-port", str(base)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=own,
        )
    try:
        printed = [demo.stdout.readline()]
        while printed[-1] and not printed[-1].startswith("database "):
            printed.append(demo.stdout.readline())
        text = "".join(printed)
        run = int(printed[0].split()[1])
        servers = re.findall(r"^CA server +(\w+) +127\.0\.0\.1:(\d+)$", text, re.M)
        assert servers == [("IOC", str(base)), ("monitor", str(base + 1))], text
        (example,) = [line for line in printed if line.startswith("example ")]
        (attach,) = [line for line in printed if line.startswith("attach ")]
        words = shlex.split(example.removeprefix("example "))
        env = assignments(words[: words.index("caget")])
        names = words[words.index("caget") + 1 :]
        addresses = f"127.0.0.1:{base} 127.0.0.1:{base + 1}"
        assert env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": addresses}
        assert shlex.split(attach.removeprefix("attach ")) == ["export", *words[: len(env)]]
        assert any(":MON:" in name for name in names) and any(":RUN:" in name for name in names)

        def answered() -> dict | None:
            assert demo.poll() is None, log.read_text()
            values = caget_elsewhere(env, names)
            return values if values[names[0]] == run and None not in values.values() else None

        wait_for(answered, 60, lambda: f"the example's PVs; the demo's log:\n{log.read_text()}")

        listing = mupnc("pvs")
        assert listing.returncode == 0, listing.stderr
        listed = [line.split("\t")[0] for line in listing.stdout.splitlines()[1:]]
        every = [pv for name in listed for pv in expand(name)]
        values = caget_elsewhere(env, every, timeout=15)
        assert [name for name, value in values.items() if value is None] == []
        assert len(every) > 500 and values[names[0]] == run
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=120)
    assert demo.returncode == 0, log.read_text()  # Ctrl-C ends the run cleanly
    assert f"run {run} ended" in rest
    assert "CA server" not in rest  # the addresses are printed once
