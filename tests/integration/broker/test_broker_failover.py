"""The engine takes a list of broker addresses (comma-separated ``WCE_AMQP_URL``) and connects to
the first node that answers, skipping dead ones, at start-up as after a drop."""

from __future__ import annotations

import socket

import pytest

from shared.broker import FailoverConnection, Publisher, broker_addresses, connect
from tests.support import IsolatedEnvironment


def dead_address(url: str) -> str:
    """The same credentials and vhost on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return url.replace("127.0.0.1:5672", f"127.0.0.1:{port}")


def test_the_address_list_is_split_on_commas_and_an_empty_one_refused() -> None:
    assert broker_addresses(" amqp://a:1/ , amqp://b:2/,") == ["amqp://a:1/", "amqp://b:2/"]
    with pytest.raises(ValueError, match="WCE_AMQP_URL"):
        broker_addresses(" , ")


async def test_a_dead_first_node_is_skipped_for_a_live_one(isolated_env: IsolatedEnvironment) -> None:
    url = isolated_env.amqp_url
    assert "127.0.0.1:5672" in url
    connection = await connect(f"{dead_address(url)},{dead_address(url)},{url}", retry_s=5)
    try:
        assert isinstance(connection, FailoverConnection)
        assert connection.address == "127.0.0.1:5672"
        publisher = await Publisher.open(connection, timeout_s=5)
        queue = await publisher.channel.declare_queue(exclusive=True)
        assert queue.name
    finally:
        await connection.close()


async def test_no_live_node_fails_start_up_after_the_retry_time(isolated_env: IsolatedEnvironment) -> None:
    from shared.broker import BrokerUnavailable

    url = isolated_env.amqp_url
    with pytest.raises(BrokerUnavailable):
        await connect(f"{dead_address(url)},{dead_address(url)}", retry_s=0.5)
