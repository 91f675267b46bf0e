"""A PgBouncer and a PostgreSQL cluster of a test's own: own ports, own data and config
directories, never the shared server. Both run as the ``postgres`` system user when the tests
run as root (neither agrees to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _own_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
    directory.chmod(0o700)
    return directory


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    import socket

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
    directory: Path = field(default_factory=lambda: _own_directory("wce-pg-"))

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
                "max_connections = 150\nshared_buffers = 64MB\n"
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


@dataclass
class OwnPgBouncer:
    """Debian's PgBouncer in transaction mode in front of ``server_port``."""

    server_port: int
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: _own_directory("wce-pgbouncer-"))
    max_client_conn: int = 300
    pool_size: int = 20
    users: tuple[str, ...] = ("postgres",)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> OwnPgBouncer:
        (self.directory / "users.txt").write_text("".join(f'"{user}" ""\n' for user in self.users))
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'users.txt'}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"max_client_conn = {self.max_client_conn}\ndefault_pool_size = {self.pool_size}\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in self.directory.iterdir():
                os.chown(path, account.pw_uid, account.pw_gid)
        self.process = subprocess.Popen(
            [
                "pgbouncer",
                *(["-u", "postgres"] if os.geteuid() == 0 else []),
                str(self.directory / "pgbouncer.ini"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
