"""The simulator's state and operations, independent of the HTTP layer."""

from __future__ import annotations

import asyncio
import gc
import random
import re
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import content, formats, lifecycle, queries
from .accounts import ACCOUNT_SID_RE, Account, AccountBook
from .callbacks import CallbackDispatcher, Delivery, connection_overrides
from .errors import TwilioError, sync_error
from .faults import FaultBook, decide_create
from .http_client import KeepAliveClient
from .messages import Message
from .stats import REJECTED, RequestRecord, StatsRegistry
from .store import MessageStore
from .timers import TimerQueue
from .validation import CreateRequest, parse_create
from .webhooks import inbound_params, sign, status_request


class AdminError(ValueError):
    """A malformed admin request; answered with HTTP 400."""


class Reply(NamedTuple):
    status: int
    body: bytes
    # Waited before answering (simulated latency, or a hang the client should time out on).
    delay_s: float = 0.0
    retry_after_s: int | None = None


def error_reply(error: TwilioError, delay_s: float = 0.0, retry_after_s: int | None = None) -> Reply:
    return Reply(error.http_status, formats.error_body(error), delay_s, retry_after_s)


class Simulator:
    def __init__(
        self,
        *,
        faults: Mapping[str, Any],
        seed: int | None,
        callback_workers: int,
        callback_timeout_s: float,
    ) -> None:
        self.accounts = AccountBook()
        self.store = MessageStore()
        self.stats = StatsRegistry()
        self.templates = content.TemplateStore()
        self.faults = FaultBook(faults)
        self._startup_seed = seed
        self._seed = seed
        self._rng = random.Random(seed)
        self._client = KeepAliveClient(callback_timeout_s)
        self._dispatcher = CallbackDispatcher(self._client, callback_workers, self._callback_done)
        self._generation = 0
        # Per account: [epoch second, creates accepted in it] for rate_limit_mps.
        self._windows: dict[str, list[int]] = {}
        # Accepted creates per (account, from, to): their times, for the pair rate limit.
        self._pairs: dict[tuple[str, str, str], deque[float]] = {}
        self._timers: TimerQueue | None = None
        # Keep-alive connections the server closed: idle, or as a request arrived after the timeout.
        self.connection_events: Counter[str] = Counter()

    async def start(self) -> None:
        self._timers = TimerQueue(asyncio.get_running_loop())
        self._dispatcher.start()

    async def stop(self) -> None:
        await self._dispatcher.stop()
        await self._client.close()

    # accounts, templates, faults

    def register_account(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        sid = spec.get("account_sid")
        token = spec.get("auth_token")
        if not isinstance(sid, str) or not ACCOUNT_SID_RE.match(sid):
            raise AdminError("account_sid must match ^AC[0-9a-fA-F]{32}$")
        if not isinstance(token, str) or not token:
            raise AdminError("auth_token is required")
        inbound_url = spec.get("inbound_url")
        if inbound_url is not None and not isinstance(inbound_url, str):
            raise AdminError("inbound_url must be a string or null")
        patch = {"rate_limit_mps": spec.get("rate_limit_mps")}
        patch.update(spec.get("faults") or {})
        try:
            self.faults.patch(patch, sid)
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        account, created = self.accounts.upsert(sid, token, inbound_url)
        if created:
            for template in content.default_templates():
                self.templates.upsert(sid, template, time.time())
        if spec.get("templates"):
            self.add_templates({"account_sid": sid, "templates": spec["templates"]})
        return {"account_sid": account.sid, "created": created}

    def add_templates(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        sid = spec.get("account_sid")
        templates = spec.get("templates")
        if not isinstance(sid, str) or self.accounts.get(sid) is None:
            raise AdminError("account_sid must name a registered account")
        if not isinstance(templates, list) or not all(isinstance(t, dict) for t in templates):
            raise AdminError("templates must be a list of objects")
        if spec.get("replace"):
            self.templates.remove_all(sid)
        now = time.time()
        try:
            added = [self.templates.upsert(sid, t, now) for t in templates]
        except content.TemplateError as exc:
            raise AdminError(str(exc)) from exc
        return {"templates": [content.content_and_approvals_resource(t) for t in added]}

    def patch_faults(self, body: Mapping[str, Any]) -> dict[str, Any]:
        patch = dict(body)
        account_sid = patch.pop("account_sid", None)
        if "seed" in patch:
            seed = patch.pop("seed")
            if seed is not None and not isinstance(seed, int):
                raise AdminError("seed must be an integer or null")
            self._seed = seed
            self._rng.seed(seed)
        try:
            self.faults.patch(patch, account_sid)
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        return self.describe_faults(account_sid)

    def describe_faults(self, account_sid: str | None) -> dict[str, Any]:
        return {"seed": self._seed, **self.faults.describe(account_sid)}

    def reset(self, *, accounts: bool, faults: bool) -> None:
        self._generation += 1
        # Messages frozen out of the collector's reach (see __main__) become collectable again.
        gc.unfreeze()
        self.store.clear()
        self.stats.clear()
        self.connection_events.clear()
        self._windows.clear()
        self._pairs.clear()
        self._dispatcher.discard_queued()
        if self._timers is not None:
            self._timers.clear()
        if accounts:
            self.accounts.clear()
            self.templates.clear()
            self.faults.forget_accounts()
        if faults:
            self.faults.reset()
            self._seed = self._startup_seed
            self._rng.seed(self._startup_seed)

    def connection_read_delay(self) -> float:
        """How long a new connection, or a request on a reused one, is left unread (the
        ``p_connection_unread`` fault)."""
        config = self.faults.global_config()
        if config.p_connection_unread and self._rng.random() < config.p_connection_unread:
            self.connection_events["read_late"] += 1
            return config.connection_unread_s
        return 0.0

    # Messages API

    def create_message(self, account: Account, form: Mapping[str, str], num_media: int, at: float) -> Reply:
        """Handle a create call received at ``at`` (epoch seconds)."""
        request = parse_create(form, num_media, lambda sid: self.templates.get(account.sid, sid) is not None)
        if isinstance(request, TwilioError):
            self._record(
                account.sid, form.get("To", ""), form.get("Body", ""), at, None, REJECTED, request.code
            )
            return error_reply(request)
        config = self.faults.for_account(account.sid)
        window = self._windows.get(account.sid)
        second = int(at)
        if window is None or window[0] != second:
            window = self._windows[account.sid] = [second, 0]
        rng = self._rng
        pair = self._pair_history(account.sid, request, at, config.pair_rate_window_s)
        decision = decide_create(config, request.to, rng.random(), rng.random(), window[1], len(pair))
        if not decision.creates:
            assert decision.error is not None
            self._record(account.sid, request.to, request.body, at, None, REJECTED, decision.error.code)
            return error_reply(decision.error, decision.latency_s, decision.retry_after_s)
        window[1] += 1
        pair.append(at)
        message = self._new_message(account, request, at)
        self._record(account.sid, message.to, message.body, at, message.sid, decision.outcome, None)
        emissions = lifecycle.plan(config, decision.async_error, message.status_callback is not None, rng)
        self._schedule(message, emissions, decision.latency_s)
        if decision.error is not None:
            return error_reply(decision.error, decision.latency_s)
        return Reply(201, formats.json_bytes(message.resource()), decision.latency_s + decision.hang_s)

    def _pair_history(
        self, account_sid: str, request: CreateRequest, at: float, window_s: float
    ) -> deque[float]:
        sender = request.from_ or request.messaging_service_sid or ""
        times = self._pairs.setdefault((account_sid, sender, request.to), deque())
        while times and times[0] <= at - window_s:
            times.popleft()
        return times

    def record_unauthenticated(self, path_account_sid: str, form: Mapping[str, str], at: float) -> None:
        """Count a create rejected with 20003 so stats cover every create request."""
        self._record(path_account_sid, form.get("To", ""), form.get("Body", ""), at, None, REJECTED, 20003)

    def fetch_message(self, account: Account, sid: str) -> Reply:
        message = self.store.get(account.sid, sid)
        if message is None:
            return error_reply(sync_error(20404))
        return Reply(200, formats.json_bytes(message.resource()))

    def list_messages(self, account: Account, path: str, params: Mapping[str, list[str]]) -> Reply:
        try:
            query, filters = queries.message_query(params)
        except ValueError:
            return error_reply(sync_error(20001))
        page = self.store.query(account.sid, query)
        envelope = formats.message_list(
            path,
            filters,
            query.page,
            query.page_size,
            query.page_token,
            [m.resource() for m in page.messages],
            page.next_token,
        )
        return Reply(200, formats.json_bytes(envelope))

    def _new_message(self, account: Account, request: CreateRequest, at: float) -> Message:
        body = request.body
        if request.content_sid is not None:
            template = self.templates.get(account.sid, request.content_sid)
            if template is not None:
                body = template.render(request.content_variables)
        message = Message(
            sid=formats.new_sid("SM"),
            seq=self.store.next_seq(),
            account_sid=account.sid,
            to=request.to,
            from_=request.from_,
            body=body,
            status="queued" if request.messaging_service_sid is None else "accepted",
            created=at,
            messaging_service_sid=request.messaging_service_sid,
            num_media=request.num_media,
            status_callback=request.status_callback,
        )
        self.store.add(message)
        return message

    def _record(
        self, account_sid: str, to: str, body: str, at: float, sid: str | None, outcome: str, code: int | None
    ) -> None:
        self.stats.record(RequestRecord(account_sid, to, at, sid, outcome, code, body))

    # status callbacks

    def _schedule(self, message: Message, emissions: list[lifecycle.Emission], base_s: float) -> None:
        timers = self._timers
        assert timers is not None
        now = timers.time() + base_s
        generation = self._generation
        for emission in emissions:
            if emission.deliver:
                self.stats.callback_scheduled(message.account_sid)
            elif emission.dropped:
                self.stats.callback_dropped(message.account_sid)
            timers.call_at(now + emission.offset_s, self._emit, message, emission, generation)

    def _emit(self, message: Message, emission: lifecycle.Emission, generation: int) -> None:
        if generation != self._generation:
            return
        message.advance(emission.status, emission.error_code, time.time())
        if not emission.deliver or message.status_callback is None:
            return
        account = self.accounts.get(message.account_sid)
        if account is None:
            return
        request = status_request(
            account.auth_token,
            message.status_callback,
            message,
            emission.status,
            emission.error_code,
            account.channel_install_sid,
        )
        retries, policy = connection_overrides(message.status_callback)
        self._dispatcher.enqueue(Delivery(request, account.sid, generation, retries, policy))

    def _callback_done(self, delivery: Delivery, ok: bool) -> None:
        if delivery.generation == self._generation:
            self.stats.callback_done(delivery.account_sid, ok)

    # inbound messages

    async def inbound(self, spec: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        account = self.accounts.get(str(spec.get("account_sid")))
        if account is None:
            raise AdminError("account_sid must name a registered account")
        url = spec.get("url") or account.inbound_url
        if not isinstance(url, str) or not url:
            raise AdminError("no url given and the account has no inbound_url")
        sender = _whatsapp_address(spec.get("from"))
        recipient = _whatsapp_address(spec.get("to"))
        if sender is None or recipient is None:
            raise AdminError("from and to must be E.164 numbers, optionally prefixed with whatsapp:")
        extra = spec.get("extra") or {}
        if not isinstance(extra, dict):
            raise AdminError("extra must be an object of string fields")
        message = Message(
            sid=formats.new_sid("SM"),
            seq=self.store.next_seq(),
            account_sid=account.sid,
            to=recipient,
            from_=sender,
            body=str(spec.get("body", "")),
            status="received",
            created=time.time(),
            direction="inbound",
        )
        self.store.add(message)
        params = inbound_params(
            message,
            str(spec.get("profile_name", "WhatsApp User")),
            {str(k): str(v) for k, v in extra.items()},
        )
        request = sign(account.auth_token, url, params, f"{message.sid}-received")
        try:
            result = await self._dispatcher.send_now(request)
        except (OSError, TimeoutError, ValueError) as exc:
            return 502, {"message_sid": message.sid, "status": None, "error": str(exc)}
        return 200, {
            "message_sid": message.sid,
            "status": result.status,
            "body": result.body.decode("utf-8", errors="replace"),
        }

    # Content API

    def list_content(
        self,
        account: Account,
        base_url: str,
        path: str,
        params: Mapping[str, list[str]],
        *,
        approvals: bool,
        filtered: bool,
    ) -> Reply:
        try:
            page_size = queries.page_size(params)
            page = queries.int_param(params, "Page", 0)
            templates = self.templates.list(account.sid)
            if filtered:
                templates = content.filter_templates(templates, params)
        except (ValueError, re.error):
            return error_reply(sync_error(20001))
        start = page * page_size
        chunk = templates[start : start + page_size]
        if approvals:
            items = [content.content_and_approvals_resource(t) for t in chunk]
        else:
            items = [content.content_resource(t, base_url) for t in chunk]
        filters = [
            (name, value)
            for name, values in params.items()
            if filtered and name not in queries.PAGING_PARAMS
            for value in values
        ]
        meta = formats.content_meta(
            base_url, path, filters, page, page_size, start + page_size < len(templates)
        )
        return Reply(200, formats.json_bytes({"contents": items, "meta": meta}))

    def fetch_approvals(self, account: Account, base_url: str, sid: str) -> Reply:
        template = self.templates.get(account.sid, sid)
        if template is None:
            return error_reply(sync_error(20404))
        return Reply(200, formats.json_bytes(content.approval_fetch_resource(template, base_url)))


def _whatsapp_address(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    number = value.removeprefix("whatsapp:")
    if not number.startswith("+") or not number[1:].isdigit():
        return None
    return "whatsapp:" + number
