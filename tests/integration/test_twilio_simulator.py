"""The Twilio simulator over real HTTP: wire format, faults, callbacks, inbound, Content API, stats."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from shared.twilio_signature import validate_signature
from tools.twilio_sim.admin_client import SimulatorAdmin, SimulatorAdminError
from tools.twilio_sim.faults import FaultConfig, decide_create
from tools.twilio_sim.stats import max_in_any_second

ROOT = Path(__file__).resolve().parents[2]
RFC2822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
SID = re.compile(r"^SM[0-9a-f]{32}$")
SENDER = "whatsapp:+14155550100"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _new_account() -> tuple[str, str]:
    return "AC" + uuid.uuid4().hex, uuid.uuid4().hex


def _recipient() -> str:
    return f"whatsapp:+1555{uuid.uuid4().int % 10**7:07d}"


@dataclass
class Hook:
    path: str
    url: str
    headers: dict[str, str]
    form: dict[str, str]
    at: float


@dataclass
class Receiver:
    """A webhook endpoint recording every POST it gets."""

    base_url: str = ""
    hooks: list[Hook] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def for_sid(self, sid: str) -> list[Hook]:
        return [h for h in self.hooks if h.form.get("MessageSid") == sid]


@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.twilio_sim", "--host", "127.0.0.1", "--port", str(port), "--seed", "7"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def record(request: web.Request) -> web.Response:
        form = await request.post()
        state.hooks.append(
            Hook(
                request.path,
                str(request.url),
                dict(request.headers),
                {k: str(v) for k, v in form.items()},
                time.time(),
            )
        )
        if request.path.startswith("/fail"):
            return web.Response(status=500)
        if request.path.startswith("/flaky"):
            # Unavailable for the first two attempts of each callback, like a restarting tracker.
            key = (form.get("MessageSid"), form.get("MessageStatus"))
            seen = sum(
                1 for h in state.hooks if (h.form.get("MessageSid"), h.form.get("MessageStatus")) == key
            )
            if seen <= 2:
                return web.Response(status=503)
        if request.path.startswith("/inbound"):
            return web.Response(text="<Response/>", content_type="text/xml")
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.base_url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def admin(simulator_url: str) -> AsyncIterator[SimulatorAdmin]:
    async with SimulatorAdmin(simulator_url) as client:
        await client.wait_ready()
        await client.reset(accounts=True, faults=True)
        yield client


@dataclass
class Account:
    sid: str
    token: str
    http: httpx.AsyncClient

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.sid}/Messages.json"

    async def send(self, to: str, **fields: str) -> httpx.Response:
        data = {"To": to, "From": SENDER, "Body": "Your appointment is tomorrow", **fields}
        return await self.http.post(self.messages_path, data=data)


@pytest.fixture
async def account(admin: SimulatorAdmin, simulator_url: str) -> AsyncIterator[Account]:
    sid, token = _new_account()
    await admin.register_account(sid, token)
    async with httpx.AsyncClient(base_url=simulator_url, auth=(sid, token), timeout=5) as http:
        yield Account(sid, token, http)


# wire format and auth


async def test_create_returns_twilio_resource(account: Account) -> None:
    to = _recipient()
    response = await account.send(to)
    assert response.status_code == 201
    body = response.json()
    assert SID.match(body["sid"])
    assert body["status"] == "queued"
    assert body["to"] == to and body["from"] == SENDER and body["account_sid"] == account.sid
    assert body["num_segments"] == "1" and body["num_media"] == "0"
    assert body["direction"] == "outbound-api" and body["api_version"] == "2010-04-01"
    assert RFC2822.match(body["date_created"]) and RFC2822.match(body["date_updated"])
    assert body["date_sent"] is None and body["error_code"] is None and body["price"] is None
    assert body["uri"] == f"/2010-04-01/Accounts/{account.sid}/Messages/{body['sid']}.json"
    assert set(body) >= {"messaging_service_sid", "subresource_uris", "price_unit", "error_message"}


async def test_messaging_service_starts_accepted_without_from(account: Account) -> None:
    service = "MG" + uuid.uuid4().hex
    response = await account.http.post(
        account.messages_path, data={"To": _recipient(), "MessagingServiceSid": service, "Body": "hi"}
    )
    assert response.status_code == 201
    assert response.json()["status"] == "accepted"
    assert response.json()["from"] is None
    assert response.json()["messaging_service_sid"] == service


async def test_wrong_credentials_get_20003(
    account: Account, admin: SimulatorAdmin, simulator_url: str
) -> None:
    other_sid, other_token = _new_account()
    await admin.register_account(other_sid, other_token)
    cases = [(account.sid, "wrong"), (other_sid, other_token), ("AC" + "0" * 32, "x")]
    async with httpx.AsyncClient(base_url=simulator_url) as http:
        for user, password in cases:
            response = await http.post(
                account.messages_path, data={"To": _recipient()}, auth=(user, password)
            )
            assert response.status_code == 401
            assert response.json() == {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        assert (await http.post(account.messages_path, data={"To": _recipient()})).status_code == 401
    stats = await admin.stats(account.sid)
    assert stats["requests_total"] == 4 and stats["rejected_by_code"] == {"20003": 4}


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"To": ""}, 21604),
        ({"To": "whatsapp:12345"}, 21211),
        ({"From": ""}, 21603),
        ({"Body": ""}, 21602),
        ({"Body": "x" * 1601}, 21617),
        ({"ContentSid": "HX" + "0" * 32, "Body": ""}, 21655),
        ({"ContentVariables": "{not json"}, 21656),
    ],
)
async def test_validation_errors(account: Account, fields: dict[str, str], code: int) -> None:
    response = await account.send(_recipient(), **fields)
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_content_variables_must_be_an_object(account: Account) -> None:
    template = await _approved_template(account)
    response = await account.send(_recipient(), ContentSid=template, ContentVariables='["Ana"]', Body="")
    assert response.status_code == 400 and response.json()["code"] == 21656
    response = await account.send(
        _recipient(), ContentSid=template, ContentVariables='{"1": "Ana", "2": "Friday"}', Body=""
    )
    assert response.status_code == 201
    assert response.json()["body"].startswith(
        "Hi Ana, this is a reminder of your appointment on Friday at 10:00."
    )


async def test_unknown_routes_and_health(simulator_url: str, account: Account) -> None:
    async with httpx.AsyncClient(base_url=simulator_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/nope")).status_code == 404
    fetched = await account.http.get(f"/2010-04-01/Accounts/{account.sid}/Messages/SM{'0' * 32}.json")
    assert fetched.status_code == 404 and fetched.json()["code"] == 20404


# status callbacks


async def test_status_callbacks_are_signed_and_fetch_follows(
    account: Account, admin: SimulatorAdmin, receiver: Receiver
) -> None:
    await admin.set_faults(account_sid=account.sid, read_ratio=1.0)
    callback = receiver.url("/status?tenant=t1&x=a+b")
    response = await account.send(_recipient(), StatusCallback=callback)
    sid = response.json()["sid"]
    stats = await admin.wait_callbacks_settled(account.sid)
    hooks = receiver.for_sid(sid)
    assert sorted(h.form["MessageStatus"] for h in hooks) == ["delivered", "read", "sent"]
    assert stats["callbacks_sent"] == 3 and stats["callbacks_failed"] == 0
    for hook in hooks:
        assert validate_signature(account.token, callback, hook.form, hook.headers["X-Twilio-Signature"])
        assert not validate_signature("other-token", callback, hook.form, hook.headers["X-Twilio-Signature"])
        assert hook.headers["I-Twilio-Idempotency-Token"]
        form = hook.form
        assert form["SmsSid"] == sid and form["SmsStatus"] == form["MessageStatus"]
        assert form["AccountSid"] == account.sid and form["ApiVersion"] == "2010-04-01"
        assert form["ChannelPrefix"] == "whatsapp" and form["ChannelInstallSid"].startswith("XE")
        assert "ErrorCode" not in form
    events = {h.form["MessageStatus"]: h.form.get("EventType") for h in hooks}
    assert events == {"sent": None, "delivered": "DELIVERED", "read": "READ"}
    fetched = (await account.http.get(f"/2010-04-01/Accounts/{account.sid}/Messages/{sid}.json")).json()
    assert fetched["status"] == "read" and RFC2822.match(fetched["date_sent"])


async def test_failed_callback_deliveries_are_counted(
    account: Account, admin: SimulatorAdmin, receiver: Receiver
) -> None:
    await admin.set_faults(account_sid=account.sid, read_ratio=0.0)
    await account.send(_recipient(), StatusCallback=receiver.url("/fail"))
    stats = await admin.wait_callbacks_settled(account.sid)
    assert stats["callbacks_failed"] == 2 and stats["callbacks_sent"] == 0


async def test_callbacks_are_retried_only_when_the_url_asks_for_connection_retries(
    account: Account, admin: SimulatorAdmin, receiver: Receiver
) -> None:
    # Given an endpoint that answers 503 to the first two attempts of every callback
    await admin.set_faults(account_sid=account.sid, read_ratio=0.0)

    # When one message asks for three retries on any failure, and another asks for none
    retried = (await account.send(_recipient(), StatusCallback=receiver.url("/flaky/a#rc=3&rp=all"))).json()
    plain = (await account.send(_recipient(), StatusCallback=receiver.url("/flaky/b"))).json()
    stats = await admin.wait_callbacks_settled(account.sid, timeout_s=30)

    # Then the first one's sent and delivered callbacks arrive on their third attempt, a second
    # and then two more after the first, without the fragment; the second one's are lost
    hooks = receiver.for_sid(retried["sid"])
    assert sorted(h.form["MessageStatus"] for h in hooks) == ["delivered"] * 3 + ["sent"] * 3
    assert all(h.path == "/flaky/a" and "#" not in h.url for h in hooks)
    sent = sorted(h.at for h in hooks if h.form["MessageStatus"] == "sent")
    assert 0.9 <= sent[1] - sent[0] < 1.9 and 1.9 <= sent[2] - sent[1] < 3.5, sent
    assert len(receiver.for_sid(plain["sid"])) == 2
    assert stats["callbacks_sent"] == 2 and stats["callbacks_failed"] == 2


async def test_callback_url_credentials_become_basic_auth(
    account: Account, admin: SimulatorAdmin, receiver: Receiver
) -> None:
    await admin.set_faults(account_sid=account.sid, read_ratio=0.0, delivered_ratio=0.0)
    callback = receiver.url("/creds").replace("http://", "http://hook:s%40cret@")
    sid = (await account.send(_recipient(), StatusCallback=callback)).json()["sid"]
    await admin.wait_callbacks_settled(account.sid)
    (hook,) = receiver.for_sid(sid)
    assert hook.headers["Authorization"] == "Basic " + base64.b64encode(b"hook:s@cret").decode()
    assert hook.headers["Host"] == receiver.base_url.removeprefix("http://")


async def test_callbacks_disabled_still_advance_status(account: Account, admin: SimulatorAdmin) -> None:
    await admin.set_faults(callbacks_enabled=False, read_ratio=0.0, status_jitter_ms=0)
    sid = (await account.send(_recipient(), StatusCallback="http://127.0.0.1:9/never")).json()["sid"]
    stats = await admin.wait_callbacks_settled(account.sid)
    assert stats["callbacks_sent"] == stats["callbacks_failed"] == 0
    deadline = time.monotonic() + 5
    status = ""
    while status != "delivered" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        fetched = await account.http.get(f"/2010-04-01/Accounts/{account.sid}/Messages/{sid}.json")
        status = fetched.json()["status"]
    assert status == "delivered"


async def test_drop_duplicate_and_out_of_order_callbacks(
    account: Account, admin: SimulatorAdmin, receiver: Receiver
) -> None:
    await admin.set_faults(account_sid=account.sid, read_ratio=0.0, p_drop_callback=1.0)
    dropped = (await account.send(_recipient(), StatusCallback=receiver.url("/drop"))).json()["sid"]
    stats = await admin.wait_callbacks_settled(account.sid)
    assert receiver.for_sid(dropped) == [] and stats["callbacks_dropped"] == 2

    await admin.set_faults(account_sid=account.sid, p_drop_callback=None, p_duplicate_callback=1.0)
    duplicated = (await account.send(_recipient(), StatusCallback=receiver.url("/dup"))).json()["sid"]
    await admin.wait_callbacks_settled(account.sid)
    hooks = receiver.for_sid(duplicated)
    assert sorted(h.form["MessageStatus"] for h in hooks) == ["delivered", "delivered", "sent", "sent"]
    tokens = {h.form["MessageStatus"]: set() for h in hooks}
    for hook in hooks:
        tokens[hook.form["MessageStatus"]].add(hook.headers["I-Twilio-Idempotency-Token"])
    assert all(len(t) == 1 for t in tokens.values())

    await admin.set_faults(
        account_sid=account.sid,
        p_duplicate_callback=None,
        p_out_of_order=1.0,
        status_jitter_ms=0,
        status_delay_ms=40,
    )
    reordered = (await account.send(_recipient(), StatusCallback=receiver.url("/ooo"))).json()["sid"]
    await admin.wait_callbacks_settled(account.sid)
    arrival = [h.form["MessageStatus"] for h in sorted(receiver.for_sid(reordered), key=lambda h: h.at)]
    assert arrival == ["delivered", "sent"]
    fetched = (await account.http.get(f"/2010-04-01/Accounts/{account.sid}/Messages/{reordered}.json")).json()
    assert fetched["status"] == "delivered"


# listing


async def test_list_filters_by_to_and_date_sent(account: Account) -> None:
    alice, bob = _recipient(), _recipient()
    sids = [(await account.send(alice)).json()["sid"] for _ in range(3)]
    await account.send(bob)
    today = datetime.now(UTC).date()

    async def listing(**params: str) -> dict[str, Any]:
        response = await account.http.get(account.messages_path, params=params)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    page = await listing(To=alice)
    assert [m["sid"] for m in page["messages"]] == sids[::-1]
    assert page["page"] == 0 and page["start"] == 0 and page["end"] == 2 and page["next_page_uri"] is None
    assert page["uri"].startswith(account.messages_path + "?To=")
    assert len((await listing())["messages"]) == 4
    assert len((await listing(To=alice, DateSent=today.isoformat()))["messages"]) == 3
    yesterday, tomorrow = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    assert (await listing(To=alice, **{"DateSent<": yesterday}))["messages"] == []
    assert (await listing(To=alice, **{"DateSent>": tomorrow}))["messages"] == []
    assert len((await listing(To=alice, **{"DateSent>": today.isoformat()}))["messages"]) == 3
    assert len((await listing(From=SENDER))["messages"]) == 4
    assert (await listing(From="whatsapp:+10000000000"))["messages"] == []

    seen: list[str] = []
    next_uri: str | None = f"{account.messages_path}?To={alice.replace('+', '%2B')}&PageSize=2"
    while next_uri:
        data = (await account.http.get(next_uri)).json()
        assert data["page_size"] == 2
        seen += [m["sid"] for m in data["messages"]]
        next_uri = data["next_page_uri"]
    assert seen == sids[::-1]
    bad = await account.http.get(account.messages_path, params={"DateSent": "yesterday"})
    assert bad.status_code == 400


# faults


async def test_429_with_retry_after_creates_nothing(account: Account, admin: SimulatorAdmin) -> None:
    await admin.set_faults(account_sid=account.sid, p_429=1.0, retry_after_s=2)
    to = _recipient()
    response = await account.send(to)
    assert response.status_code == 429 and response.json()["code"] == 20429
    assert response.headers["Retry-After"] == "2"
    stats = await admin.stats(account.sid)
    assert stats["accepted_total"] == 0 and stats["rejected_by_code"] == {"20429": 1}
    assert (await account.http.get(account.messages_path, params={"To": to})).json()["messages"] == []


async def test_5xx_before_and_after_creation(account: Account, admin: SimulatorAdmin) -> None:
    await admin.set_faults(account_sid=account.sid, p_5xx_before=1.0)
    lost = _recipient()
    response = await account.send(lost)
    assert response.status_code == 500 and response.json()["code"] == 20500
    assert (await account.http.get(account.messages_path, params={"To": lost})).json()["messages"] == []

    await admin.set_faults(account_sid=account.sid, p_5xx_before=None, p_5xx_after=1.0)
    kept = _recipient()
    response = await account.send(kept)
    assert response.status_code == 500 and response.json()["code"] == 20500
    found = (await account.http.get(account.messages_path, params={"To": kept})).json()["messages"]
    assert len(found) == 1
    stats = await admin.stats(account.sid)
    assert stats["per_to"] == {kept: 1} and stats["faults_after_create"] == {"error_after_create": 1}


async def test_timeout_after_creation(account: Account, admin: SimulatorAdmin) -> None:
    await admin.set_faults(account_sid=account.sid, p_timeout_after=1.0, timeout_hang_s=1.0)
    to = _recipient()
    with pytest.raises(httpx.ReadTimeout):
        await account.http.post(
            account.messages_path, data={"To": to, "From": SENDER, "Body": "hi"}, timeout=0.3
        )
    found = (await account.http.get(account.messages_path, params={"To": to})).json()["messages"]
    assert len(found) == 1


async def test_a_starved_simulator_leaves_requests_on_reused_connections_unread(
    account: Account, admin: SimulatorAdmin, simulator_url: str
) -> None:
    # Given two clients whose keep-alive connections each served a create, one that gives up
    # after 0.5 s and one that waits
    hasty_to, patient_to = _recipient(), _recipient()
    async with httpx.AsyncClient(base_url=simulator_url, auth=(account.sid, account.token)) as hasty:
        for http in (hasty, account.http):
            warm = {"To": _recipient(), "From": SENDER, "Body": "a"}
            assert (await http.post(account.messages_path, data=warm)).status_code == 201

        # When every request on a reused connection is left unread for 1.5 s, and each client
        # writes a create on its connection
        await admin.set_faults(p_connection_unread=1.0, connection_unread_s=1.5)
        started = time.monotonic()
        patient = asyncio.create_task(account.send(patient_to))
        with pytest.raises(httpx.ReadTimeout):
            await hasty.post(
                account.messages_path, data={"To": hasty_to, "From": SENDER, "Body": "b"}, timeout=0.5
            )
        answered = await patient
        waited = time.monotonic() - started
        await admin.set_faults(p_connection_unread=None, connection_unread_s=None)

    # Then the waiting client's create is processed once read; the create read after its client
    # gave up is dropped unprocessed, so it never exists
    assert answered.status_code == 201 and waited >= 1.5
    await asyncio.sleep(1.5)
    stats = await admin.stats(account.sid)
    assert patient_to in stats["per_to"] and hasty_to not in stats["per_to"]
    assert stats["connections"]["read_late"] == stats["connections"]["read_late_done"] == 2
    assert stats["connections"]["dropped_client_gone"] == 1


async def test_latency_and_per_account_scope(
    account: Account, admin: SimulatorAdmin, simulator_url: str
) -> None:
    other_sid, other_token = _new_account()
    await admin.register_account(other_sid, other_token)
    await admin.set_faults(account_sid=account.sid, latency_ms=400, latency_jitter_ms=10)
    started = time.monotonic()
    assert (await account.send(_recipient())).status_code == 201
    assert time.monotonic() - started >= 0.4
    async with httpx.AsyncClient(base_url=simulator_url, auth=(other_sid, other_token)) as http:
        started = time.monotonic()
        response = await http.post(
            f"/2010-04-01/Accounts/{other_sid}/Messages.json",
            data={"To": _recipient(), "From": SENDER, "Body": "x"},
        )
        assert response.status_code == 201 and time.monotonic() - started < 0.3
    faults = await admin.faults(account.sid)
    assert faults["effective"]["latency_ms"] == 400 and faults["global"]["latency_ms"] == 0


async def test_seeded_faults_are_reproducible(account: Account, admin: SimulatorAdmin) -> None:
    async def pattern() -> list[int]:
        await admin.set_faults(seed=1234, p_429=0.5)
        return [(await account.send(_recipient())).status_code for _ in range(20)]

    first = await pattern()
    assert first == await pattern()
    assert set(first) == {201, 429}


async def test_bad_fault_patch_is_rejected(admin: SimulatorAdmin) -> None:
    with pytest.raises(SimulatorAdminError, match="unknown fault knob"):
        await admin.set_faults(p_everything=1)
    with pytest.raises(SimulatorAdminError, match="probability"):
        await admin.set_faults(p_429=2)


async def test_permanent_sync_errors(account: Account, admin: SimulatorAdmin) -> None:
    numbers = {"+15550001001": 21211, "+15550001002": 21610, "+15550001003": 21614, "+15550001004": 20003}
    await admin.set_faults(permanent_errors=numbers)
    for number, code in numbers.items():
        response = await account.send(f"whatsapp:{number}")
        assert response.json()["code"] == code
        assert response.status_code == (401 if code == 20003 else 400)
    stats = await admin.stats(account.sid)
    assert stats["accepted_total"] == 0
    assert stats["rejected_by_code"] == {str(code): 1 for code in numbers.values()}


async def test_permanent_async_errors(account: Account, admin: SimulatorAdmin, receiver: Receiver) -> None:
    await admin.set_faults(
        account_sid=account.sid, permanent_errors={"whatsapp:+15550002001": 63016, "+15550002002": 30005}
    )
    failed = await account.send("whatsapp:+15550002001", StatusCallback=receiver.url("/async"))
    undelivered = await account.send("whatsapp:+15550002002", StatusCallback=receiver.url("/async"))
    assert failed.status_code == undelivered.status_code == 201
    await admin.wait_callbacks_settled(account.sid)
    failed_hooks = receiver.for_sid(failed.json()["sid"])
    assert [h.form["MessageStatus"] for h in failed_hooks] == ["failed"]
    assert failed_hooks[0].form["ErrorCode"] == "63016" and failed_hooks[0].form["ChannelStatusMessage"]
    undelivered_hooks = sorted(receiver.for_sid(undelivered.json()["sid"]), key=lambda h: h.at)
    assert [h.form["MessageStatus"] for h in undelivered_hooks] == ["sent", "undelivered"]
    assert undelivered_hooks[1].form["ErrorCode"] == "30005"
    assert undelivered_hooks[1].form["EventType"] == "UNDELIVERED"
    fetched = (await account.http.get(failed.json()["uri"])).json()
    assert fetched["status"] == "failed" and fetched["error_code"] == 63016 and fetched["error_message"]


async def test_rate_limit_answers_63018(admin: SimulatorAdmin, simulator_url: str) -> None:
    sid, token = _new_account()
    await admin.register_account(sid, token, rate_limit_mps=5)
    # Fire the burst early in a second so it cannot straddle two rate windows.
    await asyncio.sleep(1.05 - time.time() % 1)
    async with httpx.AsyncClient(base_url=simulator_url, auth=(sid, token)) as http:
        path = f"/2010-04-01/Accounts/{sid}/Messages.json"
        responses = await asyncio.gather(
            *(http.post(path, data={"To": _recipient(), "From": SENDER, "Body": "x"}) for _ in range(12))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [429] * 7
    assert {r.json()["code"] for r in responses if r.status_code == 429} == {63018}
    stats = await admin.stats(sid)
    assert stats["accepted_total"] == 5 and stats["rejected_by_code"] == {"63018": 7}
    assert stats["max_in_any_second"] == 5


async def test_spam_and_pair_rate_faults_answer_131048_and_131056(
    admin: SimulatorAdmin, simulator_url: str
) -> None:
    # Given one account refused for spam and one allowed one message per number every 30 s
    spam_sid, spam_token = _new_account()
    await admin.register_account(spam_sid, spam_token)
    await admin.set_faults({"spam_rate_limited": True}, account_sid=spam_sid)
    pair_sid, pair_token = _new_account()
    await admin.register_account(pair_sid, pair_token)
    await admin.set_faults({"pair_rate_limit": 1, "pair_rate_window_s": 30.0}, account_sid=pair_sid)
    to, other = _recipient(), _recipient()

    # When each sends to the same number twice (and the second to another number once)
    async def send(sid: str, token: str, number: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=simulator_url, auth=(sid, token)) as http:
            return await http.post(
                f"/2010-04-01/Accounts/{sid}/Messages.json", data={"To": number, "From": SENDER, "Body": "x"}
            )

    spam = [await send(spam_sid, spam_token, to) for _ in range(2)]
    pair = [await send(pair_sid, pair_token, number) for number in (to, to, other)]

    # Then the spam account is refused every time, the pair only for the second message to one number
    assert [(r.status_code, r.json()["code"]) for r in spam] == [(400, 131048)] * 2
    assert [r.status_code for r in pair] == [201, 400, 201]
    assert pair[1].json()["code"] == 131056


async def test_spam_and_pair_rate_refusals_can_come_in_the_status_callback_instead(
    admin: SimulatorAdmin, simulator_url: str, receiver: Receiver
) -> None:
    # Given the same two accounts, whose refusals are reported in the callback, as real Twilio does
    spam_sid, spam_token = _new_account()
    await admin.register_account(spam_sid, spam_token)
    await admin.set_faults(
        {"spam_rate_limited": True, "rate_refusals_in_callback": True}, account_sid=spam_sid
    )
    pair_sid, pair_token = _new_account()
    await admin.register_account(pair_sid, pair_token)
    await admin.set_faults(
        {"pair_rate_limit": 1, "pair_rate_window_s": 30.0, "rate_refusals_in_callback": True},
        account_sid=pair_sid,
    )
    to = _recipient()

    async def send(sid: str, token: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=simulator_url, auth=(sid, token)) as http:
            return await http.post(
                f"/2010-04-01/Accounts/{sid}/Messages.json",
                data={"To": to, "From": SENDER, "Body": "x", "StatusCallback": receiver.url("/refusals")},
            )

    # When each sends to one number twice
    spam = [await send(spam_sid, spam_token) for _ in range(2)]
    pair = [await send(pair_sid, pair_token) for _ in range(2)]

    # Then every create is accepted, and the refused ones fail in their callback with the code
    assert [r.status_code for r in spam + pair] == [201] * 4
    await admin.wait_callbacks_settled(spam_sid)
    await admin.wait_callbacks_settled(pair_sid)

    def finals(response: httpx.Response) -> list[tuple[str, str | None]]:
        hooks = sorted(receiver.for_sid(response.json()["sid"]), key=lambda h: h.at)
        return [(h.form["MessageStatus"], h.form.get("ErrorCode")) for h in hooks]

    assert [finals(r) for r in spam] == [[("failed", "131048")]] * 2
    assert finals(pair[1]) == [("failed", "131056")]
    assert ("failed", "131056") not in finals(pair[0]) and finals(pair[0])[0] == ("sent", None)
    async with httpx.AsyncClient(base_url=simulator_url, auth=(pair_sid, pair_token)) as http:
        fetched = (await http.get(pair[1].json()["uri"])).json()
    assert (fetched["status"], fetched["error_code"]) == ("failed", 131056)


# inbound


async def test_inbound_webhook_is_signed(account: Account, admin: SimulatorAdmin, receiver: Receiver) -> None:
    url = receiver.url("/inbound?tenant=t1")
    result = await admin.inbound(account.sid, "+15557654321", SENDER, "STOP", url=url, profile_name="Ana")
    assert result["status"] == 200 and SID.match(result["message_sid"]) and "<Response/>" in result["body"]
    hook = next(h for h in receiver.hooks if h.form.get("MessageSid") == result["message_sid"])
    assert validate_signature(account.token, url, hook.form, hook.headers["X-Twilio-Signature"])
    form = hook.form
    assert form["From"] == "whatsapp:+15557654321" and form["To"] == SENDER and form["Body"] == "STOP"
    assert form["WaId"] == "15557654321" and form["ProfileName"] == "Ana" and form["SmsStatus"] == "received"
    assert form["SmsMessageSid"] == form["MessageSid"] and form["NumMedia"] == "0"
    assert form["AccountSid"] == account.sid and form["ApiVersion"] == "2010-04-01"


async def test_inbound_uses_account_url_and_reports_failures(
    admin: SimulatorAdmin, receiver: Receiver
) -> None:
    sid, token = _new_account()
    await admin.register_account(sid, token, inbound_url=receiver.url("/inbound/default"))
    result = await admin.inbound(sid, "+15557654321", SENDER, "hello", extra={"ButtonPayload": "yes"})
    assert result["status"] == 200
    hook = next(h for h in receiver.hooks if h.form.get("MessageSid") == result["message_sid"])
    assert hook.path == "/inbound/default" and hook.form["ButtonPayload"] == "yes"
    unreachable = await admin.inbound(
        sid, "+15557654321", SENDER, "hi", url=f"http://127.0.0.1:{_free_port()}/x"
    )
    assert unreachable["status"] is None and unreachable["error"]
    other_sid, other_token = _new_account()
    await admin.register_account(other_sid, other_token)
    with pytest.raises(SimulatorAdminError, match="inbound_url"):
        await admin.inbound(other_sid, "+15557654321", SENDER, "hi")


# Content API


async def _approved_template(account: Account) -> str:
    listing = await account.http.get(
        "/v2/ContentAndApprovals", params={"ChannelEligibility": "whatsapp:approved"}
    )
    sid: str = listing.json()["contents"][0]["sid"]
    return sid


async def test_content_lists_with_approval_status(account: Account, admin: SimulatorAdmin) -> None:
    content = (await account.http.get("/v1/Content")).json()
    assert content["meta"]["key"] == "contents" and content["meta"]["next_page_url"] is None
    names = {c["friendly_name"] for c in content["contents"]}
    assert names == {"appointment_reminder", "spring_promo"}
    first = content["contents"][0]
    assert re.match(r"^HX[0-9a-f]{32}$", first["sid"]) and first["account_sid"] == account.sid
    assert first["url"].endswith(f"/v1/Content/{first['sid']}") and "approval_fetch" in first["links"]
    assert "twilio/text" in first["types"] and first["date_created"].endswith("Z")

    approvals = (await account.http.get("/v1/ContentAndApprovals")).json()["contents"]
    statuses = {c["friendly_name"]: c["approval_requests"]["status"] for c in approvals}
    assert statuses == {"appointment_reminder": "approved", "spring_promo": "rejected"}
    assert set(approvals[0]["approval_requests"]) == {
        "name",
        "category",
        "content_type",
        "status",
        "rejection_reason",
        "allow_category_change",
    }

    await admin.add_templates(
        account.sid,
        [
            {"friendly_name": f"t{i}", "language": "es", "body": "Hola {{1}}", "status": "approved"}
            for i in range(3)
        ],
    )
    eligible = await account.http.get(
        "/v2/ContentAndApprovals", params={"ChannelEligibility": "whatsapp:approved", "PageSize": 2}
    )
    page = eligible.json()
    assert page["meta"]["page_size"] == 2 and len(page["contents"]) == 2
    assert all(c["approval_requests"]["status"] == "approved" for c in page["contents"])
    following = (await account.http.get(page["meta"]["next_page_url"])).json()
    assert len(following["contents"]) == 2 and following["meta"]["next_page_url"] is None
    assert {
        c["language"]
        for c in (await account.http.get("/v2/Content", params={"Language": "es"})).json()["contents"]
    } == {"es"}

    approval = (await account.http.get(f"/v1/Content/{first['sid']}/ApprovalRequests")).json()
    assert approval["sid"] == first["sid"] and approval["whatsapp"]["status"] in ("approved", "rejected")


async def test_content_requires_auth(simulator_url: str, account: Account) -> None:
    async with httpx.AsyncClient(base_url=simulator_url) as http:
        response = await http.get("/v1/Content", auth=(account.sid, "wrong"))
        assert response.status_code == 401 and response.json()["code"] == 20003


# stats


async def test_stats_duplicates_requests_and_reset(account: Account, admin: SimulatorAdmin) -> None:
    repeated, single = _recipient(), _recipient()
    for _ in range(3):
        await account.send(repeated, Body="campaign-42 reminder")
    await account.send(single, Body="campaign-43 reminder")
    stats = await admin.stats(account.sid, include_requests=True, body_contains="campaign-42")
    assert stats["accepted_total"] == 4 and stats["requests_total"] == 4
    assert stats["duplicates"] == {repeated: 3} and stats["per_to"][single] == 1
    assert stats["max_in_any_second"] == 4 and sum(stats["per_second"].values()) == 4
    assert stats["first_at"] <= stats["last_at"] <= time.time()
    assert [r["to"] for r in stats["requests"]] == [repeated] * 3
    assert all(r["outcome"] == "accepted" and SID.match(r["sid"]) for r in stats["requests"])
    only = await admin.stats(account.sid, include_requests=True, to_in=[single])
    assert [r["to"] for r in only["requests"]] == [single]

    await admin.reset()
    assert (await admin.stats())["requests_total"] == 0
    assert (await account.send(_recipient())).status_code == 201


async def test_config_file_and_environment_at_startup(tmp_path: Path) -> None:
    (file_sid, file_token), (env_sid, env_token) = _new_account(), _new_account()
    config = tmp_path / "sim.json"
    config.write_text(
        json.dumps(
            {
                "faults": {"latency_ms": 1, "permanent_errors": {"+15550009999": 21610}},
                "accounts": [{"account_sid": file_sid, "auth_token": file_token, "rate_limit_mps": 2}],
            }
        )
    )
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SIM_PORT": str(port),
        "SIM_ACCOUNTS": f"{env_sid}:{env_token}",
        "SIM_SEED": "3",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tools.twilio_sim", "--config", str(config), cwd=ROOT, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with SimulatorAdmin(url) as admin, httpx.AsyncClient(base_url=url) as http:
            await admin.wait_ready()
            faults = await admin.faults(file_sid)
            assert faults["seed"] == 3 and faults["global"]["latency_ms"] == 1
            assert faults["effective"]["rate_limit_mps"] == 2
            for sid, token in ((file_sid, file_token), (env_sid, env_token)):
                listing = await http.get(f"/2010-04-01/Accounts/{sid}/Messages.json", auth=(sid, token))
                assert listing.status_code == 200
            blocked = await http.post(
                f"/2010-04-01/Accounts/{env_sid}/Messages.json",
                data={"To": "whatsapp:+15550009999", "From": SENDER, "Body": "x"},
                auth=(env_sid, env_token),
            )
            assert blocked.json()["code"] == 21610
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


def test_max_in_any_second_uses_sliding_windows() -> None:
    assert max_in_any_second([]) == 0
    assert max_in_any_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_any_second([10.9, 10.1, 11.05, 10.95]) == 4
    assert max_in_any_second([float(i) for i in range(10)]) == 1


def test_decide_create_partitions_the_draw() -> None:
    config = FaultConfig(
        p_429=0.25, p_5xx_before=0.25, p_5xx_after=0.25, p_timeout_after=0.25, timeout_hang_s=5
    )
    outcomes = [decide_create(config, "whatsapp:+15550000000", d, 0.0, 0) for d in (0.1, 0.3, 0.6, 0.9)]
    assert [o.error.code if o.error else None for o in outcomes] == [20429, 20500, 20500, None]
    assert [o.creates for o in outcomes] == [False, False, True, True]
    assert outcomes[3].hang_s == 5
    limited = decide_create(FaultConfig(rate_limit_mps=3), "+1555", 0.5, 0.0, 3)
    assert limited.error is not None and limited.error.code == 63018 and limited.error.http_status == 429
