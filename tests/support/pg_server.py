"""A throw-away PostgreSQL server in a temporary folder (tests and benchmarks).

``initdb`` + ``pg_ctl`` on a free loopback port, trust authentication for the superuser
``mupnc``, no Unix socket outside the folder.  PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` system user (else ``nobody``), which then owns the
folder.  Durability is traded for speed (``fsync=off``): never use this for real data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from mupnc.epics_env import free_port

USER = "mupnc"


class ServerUnavailableError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_binaries() -> Path:
    """Folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    for candidate in (
        shutil.which("pg_ctl"),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
    ):
        if candidate and Path(candidate).with_name("initdb").exists():
            return Path(candidate).resolve().parent
    raise ServerUnavailableError("no PostgreSQL server binaries (initdb, pg_ctl) found")


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, if we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServerUnavailableError("running as root and no 'postgres' or 'nobody' user to run as")


class PostgresServer:
    """Start with :meth:`start`, stop with :meth:`stop` (restartable), clean up with
    :meth:`destroy`; or use it as a context manager."""

    def __init__(self) -> None:
        self.bin = find_binaries()
        self.user = _service_user()
        self.root = Path(tempfile.mkdtemp(prefix="mupnc-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )

    def _run(self, program: str, *args: str) -> None:
        ids = {} if self.user is None else {"user": self.user.pw_uid, "group": self.user.pw_gid}
        result = subprocess.run(
            [str(self.bin / program), *args],
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
            **ids,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stderr.strip() or result.stdout}")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        log = self.root / "server.log"
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(log), "-o", options
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are dropped)."""
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.destroy()
