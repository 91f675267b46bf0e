"""A PgBouncer and a PostgreSQL cluster of a test's own: own ports, own data and config
directories, never the shared server. Both run as the ``postgres`` system user when the tests
run as root (neither agrees to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.own_postgres import OwnPostgres, own_directory, wait_for_port
from tests.support import free_port

__all__ = ["OwnPgBouncer", "OwnPostgres"]


@dataclass
class OwnPgBouncer:
    """Debian's PgBouncer in transaction mode in front of ``server_port``."""

    server_port: int
    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: own_directory("wce-pgbouncer-"))
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
