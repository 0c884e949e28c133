"""Attaching EPICS clients (``caget``, ``camonitor``, Phoebus) to a running demo.

A demo serves Channel Access on loopback from two processes, each on a port of its own:
the IOC on the base port and the monitor's result PVs on the next one (``--ca-port
PORT``: PORT and PORT+1; by default two free ports).  :func:`attach_lines` says where,
with the environment that reaches both and a ``caget`` of one PV of each.

The monitor also serves its PVs over pvAccess (:mod:`mupnc.monitor.pva`) on one more port,
TCP and UDP search alike (``--pva-port PORT``; by default a free port), printed with the
environment and a ``get`` of ``MON:ASYM`` with p4p's client.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path

from mupnc.epics_env import port_free, udp_port_free
from mupnc.errors import UsageError

CA_PORTS = (1024, 65534)
"""The base ports ``--ca-port`` takes: unprivileged, with room for the monitor's PORT+1."""
CA_ROLES = ("IOC", "monitor")
"""The demo's CA servers, in port order from the base port."""
EXAMPLE_PVS = ("RUN:NUMBER", "MON:ASYM")
"""The PVs of the printed ``caget`` example (after the prefix): one of the IOC, one of the
monitor, so the example shows that both servers answer."""
PVA_EXAMPLE = "MON:ASYM"
"""The PV of the printed pvAccess example (after the prefix)."""


def pva_wanted(flag: bool | None) -> bool:
    """``--pva``/``--no-pva`` of the monitor: on by default when p4p is installed (it is a
    dependency of mupnc); ``--pva`` without p4p is a one-line :class:`UsageError`."""
    installed = importlib.util.find_spec("p4p") is not None
    if flag and not installed:
        raise UsageError("--pva: p4p is not installed (pip install p4p)")
    return installed if flag is None else flag


def fixed_pva_port(port: int, ca_ports: list[int], dashboard_port: int | None) -> int:
    """The port ``--pva-port`` asks for; a one-line :class:`UsageError` if it is a CA
    server's or the dashboard's, or in use (TCP or UDP) on 127.0.0.1 (the pvAccess server
    would otherwise move to a random port unannounced)."""
    if port in ca_ports:
        raise UsageError(f"--pva-port {port}: a Channel Access server's port (--ca-port)")
    if port == dashboard_port:
        raise UsageError(f"--pva-port {port}: the dashboard's port")
    if not port_free(port):
        raise UsageError(f"--pva-port {port}: 127.0.0.1:{port} is in use on this machine")
    if not udp_port_free(port):
        raise UsageError(f"--pva-port {port}: UDP 127.0.0.1:{port} is in use on this machine")
    return port


def fixed_ca_ports(base: int, dashboard_port: int | None) -> list[int]:
    """The ports ``--ca-port base`` asks for, one per :data:`CA_ROLES`; a one-line
    :class:`UsageError` if one is the dashboard's or already in use (TCP or UDP) on
    127.0.0.1 (a CA server there would otherwise move to a random port unannounced)."""
    ports = [base + i for i in range(len(CA_ROLES))]
    roles = dict(zip(ports, CA_ROLES, strict=True))
    if dashboard_port in roles:
        raise UsageError(
            f"--ca-port {base}: port {dashboard_port} (the {roles[dashboard_port]}'s) is the "
            "dashboard's"
        )
    for port, role in roles.items():
        if not port_free(port):
            raise UsageError(
                f"--ca-port {base}: 127.0.0.1:{port} (the {role}'s) is in use on this machine"
            )
        if not udp_port_free(port):  # e.g. a caRepeater, which takes UDP 5065 by default
            raise UsageError(
                f"--ca-port {base}: UDP 127.0.0.1:{port} (the {role}'s) is in use on this "
                "machine (a caRepeater?)"
            )
    return ports


DEFAULT_CA_SERVER_PORT = 5064


def require_own_ca_port(role: str) -> int:
    """The Channel Access server port this process will serve on (``EPICS_CA_SERVER_PORT``,
    which caproto reads; default 5064), refused (:class:`UsageError`, one line) if another
    server on this host holds its UDP port on an interface it binds: caproto would share
    the port, and each client search would then be answered by either server at random."""
    port = int(os.environ.get("EPICS_CA_SERVER_PORT") or DEFAULT_CA_SERVER_PORT)
    for host in (os.environ.get("EPICS_CAS_INTF_ADDR_LIST") or "0.0.0.0").split():
        if not udp_port_free(port, host):
            raise UsageError(
                f"the {role}'s Channel Access port {port} (UDP {host}) is held by another "
                "process on this host (another IOC or monitor?): give this one its own "
                "EPICS_CA_SERVER_PORT"
            )
    return port


def address_list(ports: list[int]) -> str:
    """``EPICS_CA_ADDR_LIST`` reaching a CA server on each of ``ports`` on loopback."""
    return " ".join(f"127.0.0.1:{port}" for port in ports)


def attach_environment(ports: list[int]) -> str:
    """The environment assignments that point a CA client at ``ports`` (shell syntax)."""
    return f'EPICS_CA_AUTO_ADDR_LIST=NO EPICS_CA_ADDR_LIST="{address_list(ports)}"'


def pva_attach_environment(port: int) -> str:
    """The environment assignments that point a pvAccess client at the monitor's ``port``."""
    return f"EPICS_PVA_AUTO_ADDR_LIST=NO EPICS_PVA_ADDR_LIST=127.0.0.1:{port}"


def python_command() -> str:
    """How to type this environment's Python here (relative to the working folder if
    inside it: ``.venv/bin/python`` after ``make demo``)."""
    python = Path(sys.executable)
    try:
        return shlex.quote(str(python.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(python))


def attach_lines(
    ports: list[int], prefix: str, list_command: str, pva_port: int | None = None
) -> list[str]:
    """What a demo prints at start: each CA server's role and address, the environment
    that reaches them, a one-line ``caget`` that works as printed, and the command that
    lists every PV (``list_command``); with ``pva_port``, the monitor's pvAccess server,
    its environment and a one-line ``get`` with p4p's client."""
    env = attach_environment(ports)
    example = " ".join(prefix + pv for pv in EXAMPLE_PVS)
    width = max(len(role) for role in CA_ROLES)
    servers = [
        f"CA server  {role:<{width}}  127.0.0.1:{port}"
        for role, port in zip(CA_ROLES, ports, strict=True)
    ]
    lines = [*servers]
    if pva_port is not None:
        lines.append(f"PVA server {'monitor':<{width}}  127.0.0.1:{pva_port}")
    lines += [f"attach     export {env}", f"example    {env} caget {example}"]
    if pva_port is not None:
        pva = pva_attach_environment(pva_port)
        get = f"{python_command()} -m p4p.client.cli --raw get {prefix}{PVA_EXAMPLE}"
        lines += [f"pva attach export {pva}", f"pva get    {pva} {get}"]
    return [*lines, f"every PV   {list_command}"]
