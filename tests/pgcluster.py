"""A throwaway PostgreSQL server for the tests and benchmarks that need a real one.

``PostgresCluster`` runs Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``; on ``PATH`` or
under ``/usr/lib/postgresql/<version>/bin``) on a cluster in a fresh temporary directory, listening
on 127.0.0.1 at a free port with trust authentication, and deletes it on ``stop``. PostgreSQL
refuses to run as root, so under root the cluster belongs to the ``postgres`` system user (which
the package creates). ``make test`` installs the package when it is absent.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["PostgresCluster", "postgres_bin"]


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """A PostgreSQL server on a temporary cluster: ``start()``, ``create_database(name)``, ``stop()``.

    Parameters
    ----------
    max_connections : int
        The server's ``max_connections`` (each service replica holds a small pool).
    fsync : bool
        Off makes commits cheap where only the service processes are killed, never the database
        (the tests); on (the default) for measurements of a durable setup (the benchmarks).
    """

    def __init__(self, max_connections: int = 100, fsync: bool = True) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (no initdb): apt-get install postgresql")
        self.bin_dir = bin_dir
        self.max_connections = max_connections
        self.fsync = fsync
        self.port = _free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="hfrl-pg-"))
        self.data = self.directory / "data"
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:  # postgres will not run as root: hand the directory to its system user
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid}
        self.started = False

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` maintenance database (superuser ``hfrl``)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        """The connection URL of ``database`` on this server."""
        return f"postgresql://hfrl@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        result = subprocess.run([str(self.bin_dir / command[0]), *command[1:]], capture_output=True,
                                text=True, cwd=self.directory, **self._user)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> PostgresCluster:
        """``initdb`` the cluster and start the server (waits until it accepts connections)."""
        self._run("initdb", "-D", str(self.data), "-U", "hfrl", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
                   f"-c max_connections={self.max_connections} -c fsync={'on' if self.fsync else 'off'}")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-o", options,
                  "-w", "-t", "60", "start")
        self.started = True
        return self

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
