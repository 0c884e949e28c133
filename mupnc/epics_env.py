"""Channel Access environment for several IOCs on one machine, loopback only.

Each IOC process gets its own server port; clients list every ``127.0.0.1:PORT``.  No
automatic address list and a private repeater port, so nothing leaves loopback and no
shared repeater is needed.  pvAccess (the monitor's results, :mod:`mupnc.monitor.pva`)
likewise: a server bound to 127.0.0.1 on a port of its own, clients with
``EPICS_PVA_ADDR_LIST=127.0.0.1:PORT`` and no automatic address list.
"""

from __future__ import annotations

import os
import random
import socket

MAX_ARRAY_BYTES = 100_000_000


def _server_ports() -> range:
    """Ports below the kernel's ephemeral range (Linux: ``ip_local_port_range``, 32768-60999
    by default), from which every client socket gets its port: a port picked there for a
    server could be taken by a CA client's socket (the demo's own monitor, starting beside
    its IOC) before the server binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            first_ephemeral = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    return range(10000 if first_ephemeral > 11000 else 1024, first_ephemeral)


def free_port() -> int:
    """A TCP and UDP port that is free on 127.0.0.1 right now, outside the ephemeral range
    (:func:`_server_ports`)."""
    ports = _server_ports()
    while True:
        port = random.choice(ports)
        if port_free(port) and udp_port_free(port):
            return port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server can listen on TCP ``host:port`` now (as the dashboard binds it,
    with SO_REUSEADDR: a closed server's lingering connections do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, port))
        except OSError:
            return False
    return True


def udp_port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether no socket holds UDP ``host:port`` now (a CA server's search port; a
    ``caRepeater`` on 5065 holds its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind((host, port))
        except OSError:
            return False
    return True


def ca_environment(server_port: int | None, client_ports: list[int], repeater_port: int) -> dict:
    """Environment variables for a process serving on ``server_port`` (if any) and
    reaching the IOCs on ``client_ports``."""
    env = {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in client_ports),
        "EPICS_CA_REPEATER_PORT": str(repeater_port),
        "EPICS_CA_MAX_ARRAY_BYTES": str(MAX_ARRAY_BYTES),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_PORT": str(repeater_port),
        **pva_environment(None, []),  # a pvAccess server stays on loopback too
    }
    if server_port is not None:
        env["EPICS_CAS_SERVER_PORT"] = str(server_port)
        env["EPICS_CA_SERVER_PORT"] = str(server_port)
    return env


def pva_environment(server_port: int | None, client_ports: list[int]) -> dict:
    """pvAccess on loopback: a process serving on ``server_port`` (if any; TCP and UDP
    search port alike, as CA) and clients reaching the servers on ``client_ports``."""
    env = {
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in client_ports),
        "EPICS_PVAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_PVAS_BEACON_ADDR_LIST": "127.0.0.1",
    }
    if server_port is not None:
        env["EPICS_PVAS_SERVER_PORT"] = env["EPICS_PVA_SERVER_PORT"] = str(server_port)
        env["EPICS_PVAS_BROADCAST_PORT"] = str(server_port)
    return env


class BeaconSink:
    """Holds the private repeater port open so IOC beacons sent there are absorbed quietly.

    No caRepeater runs on loopback test set-ups; without a bound socket every beacon
    comes back as "connection refused" in the IOC's log.
    """

    def __init__(self, port: int) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", port))

    def close(self) -> None:
        self._socket.close()


def apply(env: dict) -> None:
    """Set ``env`` in this process (before pyepics or caproto read it)."""
    os.environ.update(env)
