"""Test harness: an isolated database and broker vhost per test session, free ports, and the
services and the Twilio simulator run as real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from tools.stack import ManagedProcess, Stack, free_port

ROOT = Path(__file__).resolve().parent.parent
BASE_DATABASE_URL = os.environ.get("WCE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_AMQP_URL = os.environ.get("WCE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
OPERATOR_TOKEN = "test-operator-token-of-the-test-suite-only"


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

    def __enter__(self) -> IsolatedEnvironment:
        self.create()
        return self

    def __exit__(self, *_: object) -> None:
        self.destroy()

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "WCE_ENVIRONMENT": "development",
            "WCE_DATABASE_URL": self.database_url,
            "WCE_AMQP_URL": self.amqp_url,
            "WCE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "WCE_LOG_LEVEL": "WARNING",
            # Every test of a session reaches the services from 127.0.0.1, including those that
            # present wrong keys on purpose: the lockout must not leak from one test into another.
            "WCE_TENANT_API_FAILURES_ALLOWED": "100000",
            "WCE_OPERATOR_API_FAILURES_ALLOWED": "100000",
            # One shared broker node holds every test tenant: classic tenant queues keep it from
            # carrying hundreds of Raft groups (the quorum tests and the cluster test ask for them).
            "WCE_DISPATCH_QUEUE_TYPE": "classic",
        }
        env.update(extra)
        return env


__all__ = ["ROOT", "IsolatedEnvironment", "ManagedProcess", "Stack", "free_port"]


async def drain_queue(
    channel: AbstractChannel, name: str, *, idle_s: float = 0.3
) -> list[AbstractIncomingMessage]:
    """Take every message ready in ``name`` (acknowledged), by consuming until it stays idle:
    ``basic.get`` is refused by quorum queues with a single active consumer (dispatch queues)."""
    queue = await channel.get_queue(name, ensure=False)
    taken: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    tag = await queue.consume(taken.put, no_ack=True)
    messages: list[AbstractIncomingMessage] = []
    try:
        while True:
            try:
                messages.append(await asyncio.wait_for(taken.get(), idle_s))
            except TimeoutError:
                return messages
    finally:
        await queue.cancel(tag)
