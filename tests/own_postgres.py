"""A PostgreSQL cluster of its own: ``initdb`` on a data directory and a port of its own, run as
the ``postgres`` system user when the tests run as root (PostgreSQL does not agree to run as root).
Used by the tests that restart their server or put a pooler in front of it, and by each worker of a
parallel test run, which would otherwise outgrow the shared server's connection limit."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.stack import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def own_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
    directory.chmod(0o700)
    return directory


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class OwnPostgres:
    """``initdb`` + ``pg_ctl`` on a port and data directory of its own (trust auth, 127.0.0.1)."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: own_directory("wce-pg-"))
    max_connections: int = 150

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def init(self) -> OwnPostgres:
        subprocess.run(
            [
                *_as_postgres(),
                str(POSTGRES_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.directory}'\nfsync = off\n"
                f"max_connections = {self.max_connections}\nshared_buffers = 64MB\n"
            )
        return self

    def start(self) -> None:
        self._ctl("-l", str(self.directory / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
