"""Security: the dashboard binds loopback unless told otherwise (checked on the listening
socket itself), database passwords never reach output, logs or command lines, and the IOC's
setpoints can be restricted to named Channel Access clients (``MUPNC_CA_WRITERS``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import epics
import pytest
from caproto.threading.client import Context
from support.chains import ioc_process
from support.cli import MUPNC, mupnc, one_error_line, run_all, sqlite_with_schema
from support.waiting import wait_for

from mupnc.epics_env import free_port

PASSWORD = "s3cret-Pw0rd"


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            packed = bytes.fromhex(address)
            if family == socket.AF_INET:
                packed = packed[::-1]
            else:  # /proc prints IPv6 as four host-order 32-bit words
                packed = b"".join(packed[i : i + 4][::-1] for i in range(0, 16, 4))
            found.add((socket.inet_ntop(family, packed), int(port, 16)))
    return found


@pytest.fixture(scope="module")
def schema_db(tmp_path_factory) -> str:
    return sqlite_with_schema(tmp_path_factory.mktemp("security") / "sec.db")


@pytest.mark.parametrize(
    ("extra", "address"), [([], "127.0.0.1"), (["--address", "0.0.0.0"], "0.0.0.0")]
)
def test_dashboard_listens_where_it_is_told_and_on_loopback_by_default(schema_db, extra, address):
    port = free_port()
    process = subprocess.Popen(
        [MUPNC, "--db", schema_db, "dashboard", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listens() -> bool:
            if any(p == port for _, p in listening(process.pid)):
                return True
            assert process.poll() is None, process.stderr.read()
            return False

        wait_for(listens, 60, f"the dashboard to listen on port {port}", step=0.2)
        assert listening(process.pid) == {(address, port)}
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# commands that connect to the database, with -v: each fails (nothing listens) in one line
FAILING = [
    ["runs"],
    ["report", "1"],
    ["db", "upgrade"],
    ["alarms"],
    ["monitor"],
    ["dashboard", "--port", "1"],
    ["ioc", "--prefix", "SEC:"],
    ["sim", "--windows", "10"],
    ["reanalyze", "1"],
    ["replay", "1", "--no-dashboard"],
    ["export", "1", "out.csv"],
    ["demo", "--duration", "1", "--no-dashboard"],
]


def test_no_password_in_output_when_the_database_is_unreachable(tmp_path):
    url = f"postgresql://shift:{PASSWORD}@127.0.0.1:{free_port()}/mupnc"
    masked = "shift:***@127.0.0.1:"
    jobs = {}
    for args in FAILING:
        jobs["--db", *args] = (["-v", "--db", url, *args], None)
        jobs["MUPNC_DB", *args] = (["-v", *args], {**os.environ, "MUPNC_DB": url})
    for key, result in run_all(jobs, tmp_path).items():
        assert PASSWORD not in result.stdout + result.stderr, key
        assert masked in one_error_line(result, 1), key


@pytest.mark.postgres
@pytest.mark.ca  # the demo runs its IOC and monitor over Channel Access
def test_demo_prints_the_database_masked_and_children_never_see_the_password(pg_server, tmp_path):
    url = pg_server.create_database("sec_demo").replace("mupnc@", f"mupnc:{PASSWORD}@", 1)
    assert PASSWORD in url
    upgrade = mupnc("-v", "--db", url, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert PASSWORD not in upgrade.stdout + upgrade.stderr and "mupnc:***@" in upgrade.stdout
    demo = subprocess.Popen(
        [MUPNC, "-v", "--db", url, "demo", "--duration", "6", "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    seen = set()
    while demo.poll() is None:  # every process of the chain, by its command line
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "mupnc" in text and str(tmp_path) not in text:
                seen.add(text)
        time.sleep(0.2)
    stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stderr
    assert any(" ioc " in c for c in seen) and any(" monitor" in c for c in seen), seen
    assert not [c for c in seen if PASSWORD in c and "demo" not in c], "password on a child's argv"
    assert PASSWORD not in stdout + stderr
    assert f"database {url.replace(PASSWORD, '***')}" in stdout


@pytest.mark.ca
def test_only_listed_clients_may_write_setpoints(ioc_prefix, ca_env, tmp_path):
    """caproto's per-client access rights (its check_access hook), set by MUPNC_CA_WRITERS:
    a client not listed sees the setpoints read-only; listed, it writes."""
    me = socket.gethostname()
    for writers, may_write in ((f"operator@control-room other-{me}", False), (f"x {me}", True)):
        prefix = f"{ioc_prefix[:-1]}{int(may_write)}:"
        log = tmp_path / f"ioc-{int(may_write)}.log"
        env = {**ca_env["ioc"], "MUPNC_CA_WRITERS": writers}
        with ioc_process(prefix, env, log, f"sqlite:///{tmp_path / 'x.db'}"):
            setpoint = epics.PV(prefix + "BEAM:RATE_SP")
            assert setpoint.wait_for_connection(timeout=5)
            assert setpoint.read_access and setpoint.write_access == may_write
            assert setpoint.get(timeout=5) == 1e8
            if may_write:
                setpoint.put(2e8, wait=True, timeout=5)
            else:
                with pytest.raises(epics.ca.CASeverityException, match="Write access denied"):
                    setpoint.put(2e8, wait=True, timeout=5)
                # a client that ignores its access rights is refused by the IOC itself
                context = Context()
                (rogue,) = context.get_pvs(prefix + "BEAM:RATE_SP")
                rogue.wait_for_connection(timeout=5)
                rogue.write([3e8], wait=False)
                assert rogue.read(timeout=5).data[0] == 1e8
                context.disconnect()
                wait_for(
                    lambda log=log: "not in MUPNC_CA_WRITERS" in log.read_text(),
                    10,
                    "the refusal logged",
                )
            assert setpoint.get(timeout=5, use_monitor=False) == (2e8 if may_write else 1e8)
            # the switches, and the fields of every record (limits, alarm limits, state names)
            for suffix in ("RUN:STOP", "BEAM:RATE_SP.HIHI", "BEAM:RATE.HYST", "BEAM:ON.ONST"):
                pv = epics.PV(prefix + suffix, auto_monitor=False)
                assert pv.wait_for_connection(timeout=5), suffix
                assert pv.read_access and pv.write_access == may_write, suffix
                pv.disconnect()
            # the fields that describe the server's own limits: read-only for everyone
            for suffix in ("BEAM:RATE_SP.DRVH", "BEAM:RATE_SP.HOPR", "BEAM:RATE.UDF"):
                pv = epics.PV(prefix + suffix, auto_monitor=False)
                assert pv.wait_for_connection(timeout=5), suffix
                assert pv.read_access and not pv.write_access, suffix
                pv.disconnect()
            setpoint.disconnect()
