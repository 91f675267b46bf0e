"""The HTTP side of outbound webhooks: one signed POST per attempt, which a slow or hostile
endpoint cannot turn into a held worker or a look inside the network.

- The whole attempt (resolve, connect, TLS, send, answer) runs under one deadline; a server that
  trickles its answer byte by byte is cut off there, not at each read's timeout.
- Redirects are not followed (a 3xx is a failed attempt), so a public endpoint cannot point the
  engine at an internal one.
- The answer is read up to a byte limit and only its start is kept.
- Where URLs are strict, every connection is made to an address the host name resolved to at
  that moment and that is public: checked in the connection itself, so a name that resolves to a
  public address when registered and to a private one later (DNS rebinding) still gets nowhere.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore

from shared.url_checks import is_public_address
from shared.webhook_signature import SIGNATURE_HEADER, signature_header

USER_AGENT = "wce-webhooks/1"
# Characters of an answer's body (or an error) kept with the attempt.
EXCERPT_CHARS = 500


class RefusedAddress(OSError):
    """The endpoint's host resolved to an address deliveries may not reach."""


class _PublicAddressesOnly(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - the interface httpcore calls
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(is_public_address(address) for address in addresses):
            raise RefusedAddress("the endpoint's host resolves to an address that is not public")
        # TLS still names and verifies the host: httpcore passes it as the server name itself.
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - the interface httpcore calls
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are not endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    response: str | None
    error: str | None
    duration_ms: int


def excerpt(raw: bytes) -> str:
    return raw[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


class WebhookClient:
    def __init__(
        self, *, max_connections: int, timeout_s: float, max_response_bytes: int, public_only: bool
    ) -> None:
        backend: httpcore.AsyncNetworkBackend = httpcore.AnyIOBackend()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_PublicAddressesOnly(backend) if public_only else backend,
        )
        self._timeout_s = timeout_s
        self._max_response_bytes = max_response_bytes

    async def post(
        self, url: str, body: bytes, *, secret: str, event_id: str, event_type: str, delivery_id: int
    ) -> AttemptResult:
        started = time.monotonic()
        timestamp = int(time.time())
        headers = [
            (b"Host", _host_header(url)),
            (b"Content-Type", b"application/json"),
            (b"User-Agent", USER_AGENT.encode()),
            (b"WCE-Event-Id", event_id.encode()),
            (b"WCE-Event-Type", event_type.encode()),
            (b"WCE-Delivery-Id", str(delivery_id).encode()),
            (SIGNATURE_HEADER.encode(), signature_header(secret, timestamp, body).encode()),
        ]
        limit = {
            "connect": self._timeout_s,
            "read": self._timeout_s,
            "write": self._timeout_s,
            "pool": self._timeout_s,
        }
        status_code: int | None = None
        received = bytearray()
        error: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._pool.stream(
                    "POST", url, headers=headers, content=body, extensions={"timeout": limit}
                ) as response:
                    status_code = response.status
                    async for chunk in response.aiter_stream():
                        received += chunk
                        if len(received) >= self._max_response_bytes:
                            break
        except TimeoutError:
            error = f"no complete answer within {self._timeout_s:g} s"
        except RefusedAddress as exc:
            error = str(exc)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS]
        except httpcore.UnsupportedProtocol as exc:
            error = f"unsupported URL: {exc}"[:EXCERPT_CHARS]
        duration_ms = int((time.monotonic() - started) * 1000)
        return AttemptResult(
            status_code=status_code,
            response=excerpt(bytes(received)) if status_code is not None else None,
            error=error,
            duration_ms=duration_ms,
        )

    async def close(self) -> None:
        await self._pool.aclose()


def _host_header(url: str) -> bytes:
    parsed = httpcore.URL(url)
    default = {b"http": 80, b"https": 443}.get(parsed.scheme)
    host = parsed.host
    return host if parsed.port in (None, default) else host + b":" + str(parsed.port).encode()
