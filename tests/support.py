"""Test harness: an isolated database and broker vhost per test session, free ports, and the
services and the Twilio simulator run as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

import httpx

ROOT = Path(__file__).resolve().parent.parent
BASE_DATABASE_URL = os.environ.get("WCE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_AMQP_URL = os.environ.get("WCE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
OPERATOR_TOKEN = "test-operator-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def with_vhost(url: str, vhost: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{quote(vhost, safe='')}"))


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@dataclass
class IsolatedEnvironment:
    """One database and one vhost that nothing else uses, so test runs never see each other."""

    name: str = field(default_factory=lambda: f"wce_t_{uuid.uuid4().hex[:10]}")

    @property
    def database_url(self) -> str:
        return with_database(BASE_DATABASE_URL, self.name)

    @property
    def amqp_url(self) -> str:
        return with_vhost(BASE_AMQP_URL, self.name)

    def create(self) -> None:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def destroy(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True, timeout=60)
        subprocess.run(
            ["psql", BASE_DATABASE_URL, "-q", "-c", f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'],
            capture_output=True,
            timeout=60,
        )

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "WCE_ENVIRONMENT": "test",
            "WCE_DATABASE_URL": self.database_url,
            "WCE_AMQP_URL": self.amqp_url,
            "WCE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "WCE_LOG_LEVEL": "WARNING",
        }
        env.update(extra)
        return env


class ManagedProcess:
    """A service or tool run as ``python -m <module>``; stopped gracefully or killed."""

    def __init__(self, module: str, env: Mapping[str, str], health_url: str | None, log_dir: Path) -> None:
        self.module = module
        self.health_url = health_url
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{module.replace('.', '_')}-{uuid.uuid4().hex[:6]}.log"
        full_env = {**os.environ, **env}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        if self.health_url is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.health_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} not healthy after {timeout_s}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 25.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode
