"""HTTP input of the Twilio webhooks: ``POST /twilio/status/{tenant}`` and
``POST|GET /twilio/inbound/{tenant}``.

These two routes carry every status callback of every campaign, so they are served by a bare
ASGI handler in front of the FastAPI app (no routing, dependency or validation machinery per
request); every other path goes to the app.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from services.tracker.ingest import Ingest, Kind, Malformed, Rejected, Webhook
from services.tracker.signing import parse_form, public_url
from shared.broker import BrokerUnavailable
from shared.logging import get_logger
from shared.metrics import AUTH_FAILURES, WEBHOOK_REJECTIONS

log = get_logger(__name__)

STATUS_PREFIX = "/twilio/status/"
INBOUND_PREFIX = "/twilio/inbound/"
# How the request metrics name these routes (shared/http_metrics.py).
STATUS_ROUTE = STATUS_PREFIX + "{tenant}"
INBOUND_ROUTE = INBOUND_PREFIX + "{tenant}"
# Twilio's form posts are a few kilobytes; anything far larger is not Twilio.
MAX_BODY_BYTES = 64 * 1024
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Every accepted status callback is answered with an empty body, which needs no content type.
_NO_CONTENT = ((b"content-length", b"0"),)
_SIGNATURE = b"x-twilio-signature"
_IDEMPOTENCY = b"i-twilio-idempotency-token"


class WebhookRoutes:
    """ASGI app: the webhook routes, then ``app`` for everything else.

    The ingest is looked up on ``app.state.ingest`` per request because it only exists once the
    app's lifespan has opened the database and the broker.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(STATUS_PREFIX):
            kind, tenant = Kind.STATUS, path[len(STATUS_PREFIX) :]
            scope["route_template"] = STATUS_ROUTE
        elif path.startswith(INBOUND_PREFIX):
            kind, tenant = Kind.INBOUND, path[len(INBOUND_PREFIX) :]
            scope["route_template"] = INBOUND_ROUTE
        else:
            await self.app(scope, receive, send)
            return
        await self._handle(kind, tenant, scope, receive, send)

    async def _handle(self, kind: Kind, tenant: str, scope: Scope, receive: Receive, send: Send) -> None:
        ingest: Ingest | None = getattr(self.app.state, "ingest", None)
        if ingest is None:
            await _respond(send, 503, b"starting")
            return
        method = scope["method"]
        if method != "POST" and not (kind is Kind.INBOUND and method == "GET"):
            await _respond(send, 405, b"method not allowed")
            return
        body = await _read_body(receive)
        if body is None:
            await _respond(send, 413, b"body too large")
            return
        headers = _headers(scope)
        query: bytes = scope["query_string"]
        if method == "POST":
            params = parse_form(body)
            signed_params = params
        else:
            # A GET webhook is signed over its URL alone; its fields are the query string.
            params = parse_form(query)
            signed_params = {}
        webhook = Webhook(
            kind=kind,
            tenant=tenant,
            url=public_url(self.app.state.settings.public_base_url, scope.get("raw_path") or b"", query),
            signed_params=signed_params,
            params=params,
            signature=headers.get(_SIGNATURE),
            idempotency_token=headers.get(_IDEMPOTENCY),
        )
        try:
            await ingest.accept(webhook)
        except Rejected as exc:
            WEBHOOK_REJECTIONS.labels(exc.reason.value).inc()
            AUTH_FAILURES.labels("webhook").inc()
            log.debug("webhook rejected", kind=kind.value, tenant=tenant, reason=exc.reason.value)
            await _respond(send, 403, b"forbidden")
            return
        except Malformed as exc:
            await _respond(send, 400, str(exc).encode())
            return
        except BrokerUnavailable as exc:
            log.warning("webhook not accepted, broker unavailable", kind=kind.value, error=str(exc))
            await _respond(send, 503, b"unavailable")
            return
        if kind is Kind.INBOUND:
            await _respond(send, 200, EMPTY_TWIML, b"text/xml")
        else:
            await _respond(send, 200, b"")


def _headers(scope: Scope) -> dict[bytes, str]:
    wanted: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name == _SIGNATURE or name == _IDEMPOTENCY:
            wanted[name] = value.decode("latin-1")
    return wanted


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = (
        [(b"content-type", content_type), (b"content-length", b"%d" % len(body))] if body else _NO_CONTENT
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
