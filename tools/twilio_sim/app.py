"""Routing of the simulator's HTTP requests to the ``Simulator``.

Independent of the HTTP server (``server.py``): a parsed request goes in, a
``Reply`` comes out, directly for everything a sender calls and as an
awaitable for the admin API, which may wait on I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from .errors import sync_error
from .forms import decode_form
from .simulator import AdminError, Reply, Simulator, error_reply


class Request(NamedTuple):
    method: str
    # Percent-decoded, without the query string.
    path: str
    query_string: bytes
    # Lower-case names; the first of repeated headers.
    headers: Mapping[bytes, bytes]
    body: bytes


_MESSAGES_PREFIX = "/2010-04-01/Accounts/"
_CONTENT_ROUTES = {
    "/v1/Content": (False, False),
    "/v2/Content": (False, True),
    "/v1/ContentAndApprovals": (True, False),
    "/v2/ContentAndApprovals": (True, True),
}
_UNAUTHORIZED = error_reply(sync_error(20003))
_NOT_FOUND = error_reply(sync_error(20404))
_METHOD_NOT_ALLOWED = Reply(405, orjson.dumps({"error": "method not allowed"}))


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.query_string.decode("latin-1"), keep_blank_values=True)


def _json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(payload))


class SimulatorApp:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    def handle(self, request: Request, received_at: float) -> Reply | Awaitable[Reply]:
        """The reply to ``request``, received at ``received_at`` (epoch seconds).

        Stats count a create at the instant it arrives, before any simulated latency.
        """
        path = request.path
        if path.startswith(_MESSAGES_PREFIX):
            return self._messages(request, received_at)
        if path in _CONTENT_ROUTES or path.startswith("/v1/Content/"):
            return self._content(request)
        if path.startswith("/admin/"):
            return self._admin_reply(request)
        if path == "/healthz":
            return _json_reply({"status": "ok"})
        return _NOT_FOUND

    async def _admin_reply(self, request: Request) -> Reply:
        try:
            return await self._admin(request)
        except AdminError as exc:
            return _json_reply({"error": str(exc)}, 400)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return _json_reply({"error": "malformed request body"}, 400)

    def _messages(self, request: Request, received_at: float) -> Reply:
        path = request.path
        body = request.body
        parts = path.split("/")
        # ['', '2010-04-01', 'Accounts', AccountSid, 'Messages.json' | 'Messages', Sid.json]
        if len(parts) < 5:
            return _NOT_FOUND
        method = request.method
        is_create = method == "POST" and len(parts) == 5 and parts[4] == "Messages.json"
        account = self.simulator.accounts.authenticate(request.headers.get(b"authorization"))
        if account is None or account.sid != parts[3]:
            if is_create:
                form, _ = decode_form(body)
                self.simulator.record_unauthenticated(parts[3], form, received_at)
            return _UNAUTHORIZED
        if is_create:
            form, num_media = decode_form(body)
            return self.simulator.create_message(account, form, num_media, received_at)
        if len(parts) == 5 and parts[4] == "Messages.json":
            if method == "GET":
                return self.simulator.list_messages(account, path, _query(request))
            return _METHOD_NOT_ALLOWED
        if len(parts) == 6 and parts[4] == "Messages" and parts[5].endswith(".json"):
            if method != "GET":
                return _METHOD_NOT_ALLOWED
            return self.simulator.fetch_message(account, parts[5].removesuffix(".json"))
        return _NOT_FOUND

    def _content(self, request: Request) -> Reply:
        path = request.path
        account = self.simulator.accounts.authenticate(request.headers.get(b"authorization"))
        if account is None:
            return _UNAUTHORIZED
        if request.method != "GET":
            return _METHOD_NOT_ALLOWED
        host = (request.headers.get(b"host") or b"localhost").decode("latin-1")
        base_url = f"http://{host}"
        route = _CONTENT_ROUTES.get(path)
        if route is not None:
            approvals, filtered = route
            return self.simulator.list_content(
                account, base_url, path, _query(request), approvals=approvals, filtered=filtered
            )
        parts = path.split("/")
        # ['', 'v1', 'Content', Sid, 'ApprovalRequests']
        if len(parts) == 5 and parts[4] == "ApprovalRequests":
            return self.simulator.fetch_approvals(account, base_url, parts[3])
        return _NOT_FOUND

    async def _admin(self, request: Request) -> Reply:
        sim = self.simulator
        path = request.path
        body = request.body
        method = request.method
        payload = orjson.loads(body) if method == "POST" and body.strip() else {}
        if not isinstance(payload, dict):
            raise AdminError("the request body must be a JSON object")
        query = _query(request)
        account_sid = query.get("account_sid", [None])[0]
        if path == "/admin/accounts" and method == "POST":
            return _json_reply(sim.register_account(payload))
        if path == "/admin/templates" and method == "POST":
            return _json_reply(sim.add_templates(payload))
        if path == "/admin/faults":
            if method == "POST":
                return _json_reply(sim.patch_faults(payload))
            return _json_reply(sim.describe_faults(account_sid))
        if path == "/admin/stats" and method == "GET":
            to_in = query.get("to_in", [None])[0]
            snapshot = sim.stats.snapshot(
                account_sid,
                include_requests="requests" in query.get("include", [""])[0].split(","),
                to_in=set(to_in.split(",")) if to_in else None,
                body_contains=query.get("body_contains", [None])[0],
            )
            snapshot["connections"] = dict(sim.connection_events)
            return _json_reply(snapshot)
        if path == "/admin/reset" and method == "POST":
            sim.reset(accounts=bool(payload.get("accounts")), faults=bool(payload.get("faults")))
            return _json_reply({"reset": True})
        if path == "/admin/inbound" and method == "POST":
            status, result = await sim.inbound(payload)
            return _json_reply(result, status)
        return _NOT_FOUND
