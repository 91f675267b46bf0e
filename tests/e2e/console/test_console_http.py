"""The console's guarantees at the HTTP level, no browser: sign-in refusals, the session cookie's
flags and sealing, CSRF on every form, another tenant's objects answering 404, and tenant and
operator sessions kept apart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.console.session import COOKIE_NAME
from tests.e2e.helpers import (
    TenantHandle,
    campaign,
    create_campaign,
    customers,
    import_customers,
    new_tenant,
    phone,
)
from tests.support import OPERATOR_TOKEN, Stack

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


@pytest.fixture
async def browser_client(console_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client keeping cookies like a browser, not following redirects."""
    async with httpx.AsyncClient(base_url=console_stack.console_url, timeout=30) as client:
        yield client


async def signed_in(client: httpx.AsyncClient, credential: str, *, operator: bool = False) -> str:
    """Sign in; the CSRF token of the new session."""
    path = "/operator/signin" if operator else "/signin"
    form = await client.get(path)
    answer = await client.post(path, data={"csrf_token": csrf_of(form), "credential": credential})
    assert answer.status_code == 303, answer.text[:500]
    return csrf_of(await client.get("/settings" if not operator else "/operator/audit"))


@pytest.fixture(scope="module")
async def two_tenants(console_stack: Stack) -> tuple[TenantHandle, TenantHandle]:
    first = await new_tenant(console_stack, rate=None)
    second = await new_tenant(console_stack, rate=None)
    await import_customers(console_stack, second, customers(3))
    return first, second


async def test_a_wrong_key_is_refused_and_opens_no_session(browser_client: httpx.AsyncClient) -> None:
    # Given the sign-in form
    form = await browser_client.get("/signin")

    # When someone signs in with a key that is not one
    answer = await browser_client.post(
        "/signin", data={"csrf_token": csrf_of(form), "credential": "wce_not-a-real-key-at-all"}
    )

    # Then they are told so, and the pages still send them to sign in
    assert answer.status_code == 401
    assert "That key was not accepted" in answer.text
    campaigns = await browser_client.get("/campaigns")
    assert campaigns.status_code == 303
    assert campaigns.headers["location"].startswith("/signin?next=")


async def test_the_session_cookie_is_http_only_same_site_strict_and_does_not_show_the_key(
    browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a tenant's key
    tenant, _ = two_tenants
    form = await browser_client.get("/signin")

    # When they sign in
    answer = await browser_client.post(
        "/signin", data={"csrf_token": csrf_of(form), "credential": tenant.api_key}
    )

    # Then the session cookie is HttpOnly, SameSite=Strict, scoped to the console, and sealed
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    # (Secure is switched off for this plain-HTTP test console; a unit test checks it is on by default.)
    value = browser_client.cookies[COOKIE_NAME]
    assert tenant.api_key not in value
    assert tenant.api_key.split("_", 1)[-1][:12] not in value
    # And every answer carries the console's security headers
    page = await browser_client.get("/campaigns")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_an_altered_session_cookie_is_no_session(
    browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a signed-in session
    await signed_in(browser_client, two_tenants[0].api_key)
    value = browser_client.cookies[COOKIE_NAME]

    # When its cookie is altered
    browser_client.cookies.clear()
    browser_client.cookies.set(
        COOKIE_NAME, value[:-6] + ("AAAAAA" if not value.endswith("AAAAAA") else "BBBBBB")
    )

    # Then the console asks to sign in
    answer = await browser_client.get("/campaigns")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin")


async def test_a_form_without_this_sessions_csrf_token_is_refused_and_changes_nothing(
    console_stack: Stack, browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a signed-in tenant, and another session's token
    tenant, _ = two_tenants
    token = await signed_in(browser_client, tenant.api_key)
    async with httpx.AsyncClient(base_url=console_stack.console_url, timeout=30) as other:
        foreign = csrf_of(await other.get("/signin"))

    # When forms are posted without a token, with a wrong one, and with the other session's
    number = phone(900)
    answers = [
        await browser_client.post("/suppressions", data={"phone": number}),
        await browser_client.post("/suppressions", data={"phone": number, "csrf_token": "forged"}),
        await browser_client.post("/suppressions", data={"phone": number, "csrf_token": foreign}),
        await browser_client.post("/signout", data={}),
        await browser_client.post("/suppressions", data={"phone": number}, headers={"X-CSRF-Token": foreign}),
    ]

    # Then each is refused with 403, and the number was never suppressed
    assert [a.status_code for a in answers] == [403] * 5
    async with httpx.AsyncClient(base_url=console_stack.api_url, headers=tenant.headers) as api:
        assert (await api.get(f"/v1/suppressions/{number}")).status_code == 404
    # And with the session's own token the same form works
    accepted = await browser_client.post("/suppressions", data={"phone": number, "csrf_token": token})
    assert accepted.status_code == 303
    async with httpx.AsyncClient(base_url=console_stack.api_url, headers=tenant.headers) as api:
        assert (await api.get(f"/v1/suppressions/{number}")).status_code == 200


async def test_another_tenants_campaign_answers_404_on_every_page_and_action(
    console_stack: Stack, browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a draft campaign of the second tenant, and the first tenant signed in
    first, second = two_tenants
    theirs = await create_campaign(console_stack, second, start=False)
    token = await signed_in(browser_client, first.api_key)
    base = f"/campaigns/{theirs['id']}"

    # When the first tenant opens its pages and acts on it
    answers = {
        "page": await browser_client.get(base),
        "csv": await browser_client.get(f"{base}/recipients.csv"),
        "recipient": await browser_client.get(f"{base}/recipients/1"),
        "test status": await browser_client.get(f"/sends/{theirs['id']}/status"),
        "cancel": await browser_client.post(
            f"{base}/actions", data={"action": "cancel", "csrf_token": token}
        ),
        "start": await browser_client.post(f"{base}/actions", data={"action": "start", "csrf_token": token}),
    }
    stream = await browser_client.get(f"{base}/progress/stream")

    # Then everything is not found, the stream ends at once, and the campaign is untouched
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 404)
    assert stream.status_code == 204
    assert (await campaign(console_stack, second, theirs["id"]))["state"] == "draft"


async def test_tenant_and_operator_sessions_each_see_only_their_own_pages(
    browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a tenant signed in
    await signed_in(browser_client, two_tenants[0].api_key)

    # Then the operator's pages send it to the operator's sign-in
    tenants = await browser_client.get("/operator/tenants")
    assert tenants.status_code == 303
    assert tenants.headers["location"].startswith("/operator/signin")

    # And a tenant key is no operator token
    form = await browser_client.get("/operator/signin")
    refused = await browser_client.post(
        "/operator/signin", data={"csrf_token": csrf_of(form), "credential": two_tenants[0].api_key}
    )
    assert refused.status_code == 401

    # And once the operator signs in, the tenant pages send it to the tenant sign-in
    await signed_in(browser_client, OPERATOR_TOKEN, operator=True)
    assert (await browser_client.get("/operator/tenants")).status_code == 200
    campaigns = await browser_client.get("/campaigns")
    assert campaigns.status_code == 303
    assert campaigns.headers["location"].startswith("/signin")


async def test_sign_in_never_redirects_to_another_site(
    browser_client: httpx.AsyncClient, two_tenants: tuple[TenantHandle, TenantHandle]
) -> None:
    # Given a sign-in link whose next page is another site
    form = await browser_client.get("/signin", params={"next": "//evil.example/steal"})

    # When the tenant signs in
    answer = await browser_client.post(
        "/signin",
        data={"csrf_token": csrf_of(form), "credential": two_tenants[0].api_key, "next": "//evil.example/x"},
    )

    # Then they land on the console's own page
    assert answer.status_code == 303
    assert answer.headers["location"] == "/campaigns"


async def test_the_wizard_works_as_plain_forms_without_javascript(
    console_stack: Stack, browser_client: httpx.AsyncClient
) -> None:
    # Given a tenant with three customers and a test number, signed in
    tenant = await new_tenant(console_stack, rate=None, test_numbers=["+14155550100"])
    await import_customers(console_stack, tenant, customers(3))
    token = await signed_in(browser_client, tenant.api_key)
    fields = {
        "csrf_token": token,
        "audience_form": "1",
        "name": "No script",
        "segment": "all_customers",
        "exclude_suppressed": "on",
        "message_kind": "body",
        "body": "Hi {customer_first_name}!",
    }

    # When the form is posted with each of its buttons, as a browser without JavaScript does
    preview = await browser_client.post("/campaigns/new", data={**fields, "action": "preview"})
    test = await browser_client.post("/campaigns/new", data={**fields, "action": "test"})
    bad = await browser_client.post("/campaigns/new", data={**fields, "body": "Hi {nope}", "action": "send"})
    sent = await browser_client.post("/campaigns/new", data={**fields, "action": "send"})

    # Then the page comes back with the count, the message and the test's status, fields kept
    assert preview.status_code == 200
    assert "<strong>3</strong> recipients" in preview.text
    assert "Hi First0!" in preview.text
    assert 'value="No script"' in preview.text
    assert test.status_code == 200
    assert 'id="test-status"' in test.text
    assert "Check the delivery status" in test.text
    # And a refused campaign names the problem and keeps the text, and a good one is sent
    assert bad.status_code == 422
    assert "unknown shortcode" in bad.text and "Hi {nope}" in bad.text
    assert sent.status_code == 303
    page = await browser_client.get(sent.headers["location"])
    assert page.status_code == 200
    assert "No script" in page.text


async def test_a_campaign_is_scheduled_and_the_sending_window_set_from_the_forms(
    console_stack: Stack, browser_client: httpx.AsyncClient
) -> None:
    # Given a tenant with customers, signed in
    tenant = await new_tenant(console_stack, rate=None, timezone="Europe/Berlin")
    await import_customers(console_stack, tenant, customers(2))
    token = await signed_in(browser_client, tenant.api_key)
    at = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT09:30")

    # When they set a weekday window, then schedule a campaign for nine thirty in two days
    window = await browser_client.post(
        "/settings/window",
        data={
            "csrf_token": token,
            "window_days": ["mon", "tue", "wed", "thu", "fri"],
            "window_start": "09:00",
            "window_end": "17:30",
            "action": "set",
        },
    )
    scheduled = await browser_client.post(
        "/campaigns/new",
        data={
            "csrf_token": token,
            "audience_form": "1",
            "name": "Later",
            "segment": "all_customers",
            "message_kind": "body",
            "body": "Hi {customer_first_name}",
            "schedule_at": at,
            "schedule_timezone": "Europe/Berlin",
            "action": "schedule",
        },
    )

    # Then the API holds the window and the scheduled campaign, and the pages show them
    assert window.status_code == 303
    async with httpx.AsyncClient(base_url=console_stack.api_url, headers=tenant.headers) as api:
        held = (await api.get("/v1/tenant/sending-window")).json()
        assert held["window"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
        assert (held["window"]["start"], held["window"]["end"]) == ("09:00", "17:30")
        assert scheduled.status_code == 303, scheduled.text[:2000]
        campaign_id = scheduled.headers["location"].rsplit("/", 1)[-1]
        stored = (await api.get(f"/v1/campaigns/{campaign_id}")).json()
    assert stored["state"] == "scheduled"
    assert stored["schedule_timezone"] == "Europe/Berlin"
    page = await browser_client.get(scheduled.headers["location"])
    assert "Scheduled to start " + at.replace("T", " ") in page.text
    assert (
        "Campaigns send on mon, tue, wed, thu, fri, 09:00–17:30"
        in (await browser_client.get("/settings")).text
    )

    # And removing the window lets campaigns send at any time again
    removed = await browser_client.post("/settings/window", data={"csrf_token": token, "action": "remove"})
    assert removed.status_code == 303
    async with httpx.AsyncClient(base_url=console_stack.api_url, headers=tenant.headers) as api:
        assert (await api.get("/v1/tenant/sending-window")).json()["window"] is None


async def test_the_operators_tenant_page_shows_the_tenants_settings_and_credits_before_any_change(
    console_stack: Stack, browser_client: httpx.AsyncClient
) -> None:
    # Given a tenant at 40/s with 1,234 purchased credits, and the operator signed in
    tenant = await new_tenant(console_stack, rate=40, credits=1_234)
    csrf = await signed_in(browser_client, OPERATOR_TOKEN, operator=True)

    # When the operator opens the tenant's page, before changing anything
    page = await browser_client.get(f"/operator/tenants/{tenant.id}")

    # Then it shows the tenant's settings and credits, read from the tenant itself
    assert page.status_code == 200, page.text[:500]
    facts = page.text[page.text.index('<dl class="facts') : page.text.index("</dl>")]
    assert "40/s" in facts and tenant.account_sid in facts and tenant.whatsapp_from in facts
    assert "1,234 (plan" in facts

    # And after a top-up through its form the page shows the new balance
    topped = await browser_client.post(
        f"/operator/tenants/{tenant.id}/credits", data={"csrf_token": csrf, "top_up": "1000"}
    )
    assert topped.status_code == 303, topped.text[:500]
    after = await browser_client.get(topped.headers["location"])
    assert "2,234 (plan" in after.text and "credits were changed" in after.text

    # And a tenant that does not exist is a 404 page
    assert (
        await browser_client.get("/operator/tenants/00000000-0000-0000-0000-000000000000")
    ).status_code == 404
