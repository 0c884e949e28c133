"""``mupnc demo --ca-port PORT`` refuses, in one line and before any run is made, ports it
could not serve on as printed: the IOC's PORT or the monitor's PORT+1 held by another
process (TCP, or UDP as a caRepeater holds 5065), or given to the dashboard; ``--pva-port
PORT`` likewise (the monitor's pvAccess server, TCP and UDP search on PORT)."""

from __future__ import annotations

import json
import os
import socket

from support.cli import mupnc, one_error_line, run_all, sqlite_with_schema

from mupnc.epics_env import free_port, port_free, udp_port_free


def free_pair(count: int = 2) -> int:
    """A port P with P … P+count-1 free on loopback (TCP and UDP)."""
    while True:
        base = free_port()
        ports = range(base, base + count)
        if ports[-1] < 65535 and all(port_free(p) and udp_port_free(p) for p in ports):
            return base


def test_ca_ports_in_use_are_refused_before_a_run_is_made(tmp_path) -> None:
    db = sqlite_with_schema(tmp_path / "d.db")
    base = free_pair()
    demo = ["--db", db, "demo", "--no-dashboard", "--duration", "5", "--ca-port", str(base)]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind(("127.0.0.1", base))
        tcp.listen()
        udp.bind(("127.0.0.1", base + 1))
        dashboard = [*demo[:3], "--port", str(base + 1), *demo[4:]]  # not --no-dashboard
        done = run_all({"tcp": (demo, None), "dashboard": (dashboard, None)}, tmp_path)
        tcp.close()
        udp_only = run_all({"udp": (demo, None)}, tmp_path)["udp"]
    assert one_error_line(done["tcp"], 2) == (
        f"mupnc: error: --ca-port {base}: 127.0.0.1:{base} (the IOC's) is in use on this machine"
    )
    assert one_error_line(done["dashboard"], 2) == (
        f"mupnc: error: --ca-port {base}: port {base + 1} (the monitor's) is the dashboard's"
    )
    assert one_error_line(udp_only, 2) == (
        f"mupnc: error: --ca-port {base}: UDP 127.0.0.1:{base + 1} (the monitor's) is in use "
        "on this machine (a caRepeater?)"
    )
    assert json.loads(mupnc("runs", "--json", db=db).stdout) == []


def test_pva_port_in_use_is_refused_before_a_run_is_made(tmp_path) -> None:
    db = sqlite_with_schema(tmp_path / "d.db")
    base = free_pair(5)
    demo = ["--db", db, "demo", "--no-dashboard", "--duration", "5", "--pva-port", str(base)]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        tcp.bind(("127.0.0.1", base))
        tcp.listen()
        udp.bind(("127.0.0.1", base + 1))
        udp_demo = [*demo[:-1], str(base + 1)]
        ca = [*udp_demo, "--ca-port", str(base + 2)]  # the monitor's CA port is base + 3
        ca[ca.index("--pva-port") + 1] = str(base + 3)
        dashboard = [*demo[:3], "--port", str(base + 4), *udp_demo[4:-1], str(base + 4)]
        done = run_all(
            {
                "tcp": (demo, None),
                "udp": (udp_demo, None),
                "ca": (ca, None),
                "dashboard": (dashboard, None),
            },
            tmp_path,
        )
    assert one_error_line(done["tcp"], 2) == (
        f"mupnc: error: --pva-port {base}: 127.0.0.1:{base} is in use on this machine"
    )
    assert one_error_line(done["udp"], 2) == (
        f"mupnc: error: --pva-port {base + 1}: UDP 127.0.0.1:{base + 1} is in use on this machine"
    )
    assert one_error_line(done["ca"], 2) == (
        f"mupnc: error: --pva-port {base + 3}: a Channel Access server's port (--ca-port)"
    )
    assert one_error_line(done["dashboard"], 2) == (
        f"mupnc: error: --pva-port {base + 4}: the dashboard's port"
    )
    assert json.loads(mupnc("runs", "--json", db=db).stdout) == []


def test_an_ioc_or_monitor_on_a_ca_port_another_server_holds_is_refused(tmp_path) -> None:
    """Two CA servers on one UDP port would share it (caproto binds it shared) and each
    client search would be answered by either at random: ``mupnc ioc`` and ``mupnc monitor``
    refuse, one line, exit 2, before any run is made."""
    db = sqlite_with_schema(tmp_path / "d.db")
    port = free_pair(1)
    env = {
        **os.environ,
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
        ioc = mupnc("ioc", "--prefix", "TAKEN:", db=db, env=env)
        monitor = mupnc("monitor", "--prefix", "TAKEN:", db=db, env=env)
    for role, result in (("IOC", ioc), ("monitor", monitor)):
        assert one_error_line(result, 2) == (
            f"mupnc: error: the {role}'s Channel Access port {port} (UDP 127.0.0.1) is held by "
            "another process on this host (another IOC or monitor?): give this one its own "
            "EPICS_CA_SERVER_PORT"
        )
    assert json.loads(mupnc("runs", "--json", db=db).stdout) == []


def test_free_ports_for_servers_are_never_ones_the_kernel_gives_clients() -> None:
    """A demo picks its servers' ports before they bind them; a port from the kernel's
    ephemeral range could meanwhile be given to a client socket (the demo's own monitor's
    CA client, starting beside its IOC), and the IOC then refused it as held by another
    process: once in CI, a demo stopped at 2.85 s exited 1 that way."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        first_ephemeral, last_ephemeral = (int(word) for word in ranges.read().split())
    ports = [free_port() for _ in range(200)]
    assert not [port for port in ports if first_ephemeral <= port <= last_ephemeral]
    assert len(set(ports)) > 150  # spread, not one port again and again
