"""A person runs a campaign from the web console in a real browser, from signing in to the CSV,
against the real services; every page they see passes axe-core's accessibility check and is
kept as a screenshot under var/test-artifacts/console-journey/."""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.e2e.console.browser import Journey, chromium_path
from tests.e2e.helpers import TenantHandle, customers, import_customers, new_tenant, phone
from tests.support import OPERATOR_TOKEN, ROOT, Stack

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (.ci/run installs it)"
)

ARTIFACTS = ROOT / "var/test-artifacts/console-journey"
CUSTOMERS = 40
# Slow enough that a pause lands mid-campaign on any machine: 40 messages take 10 s at 4/s.
RATE = 4
TEST_NUMBER = "+14155550100"
WAIT_MS = 60_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def api_preview(stack: Stack, tenant: TenantHandle) -> dict:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=tenant.headers, timeout=30) as client:
        response = await client.post("/v1/audiences/preview", json={"segment": "all_customers"})
    response.raise_for_status()
    return response.json()


async def api_progress(stack: Stack, tenant: TenantHandle, campaign_id: str) -> dict:
    async with httpx.AsyncClient(base_url=stack.tracker_url, headers=tenant.headers, timeout=30) as client:
        response = await client.get(f"/v1/campaigns/{campaign_id}/progress")
    response.raise_for_status()
    return response.json()


async def test_a_person_runs_a_campaign_from_the_console_from_sign_in_to_the_csv(
    console_stack: Stack, browser: Browser
) -> None:
    stack = console_stack
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    # Given a business with 40 customers, a test number and a rate of 4 messages a second
    tenant = await new_tenant(stack, rate=RATE, test_numbers=[TEST_NUMBER], timezone="Europe/Berlin")
    await import_customers(stack, tenant, customers(CUSTOMERS))
    # bypass_csp: axe is injected as an inline script, which the console's policy refuses.
    context = await browser.new_context(bypass_csp=True, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    journey = Journey(page, ARTIFACTS)

    # When they sign in with their API key, from the keyboard: the first Tab reaches the link that
    # skips to the content, and the form is filled and sent without the mouse
    await page.goto(f"{stack.console_url}/signin")
    await journey.page_seen("sign-in")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.get_by_label("API key").focus()
    await page.keyboard.type(tenant.api_key)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/campaigns")
    await journey.page_seen("campaigns-empty")

    # And build an audience: the count is the one the API reports
    await page.get_by_role("link", name="New campaign").first.click()
    await page.get_by_label("Campaign name").fill("Spring offer")
    await page.get_by_label("Segment").select_option("all_customers")
    expected = await api_preview(stack, tenant)
    assert expected["total"] == CUSTOMERS
    await expect(page.locator("#audience-total")).to_contain_text(f"{CUSTOMERS} recipients")

    # And personalise the message with the shortcode picker, and see it for sample recipients
    await page.get_by_label("Message text").fill("Hi ")
    await page.get_by_role("button", name="Insert {customer_first_name}").click()
    await page.get_by_label("Message text").press("End")
    await page.get_by_label("Message text").type(", spring treatments are 20% off this week!")
    await expect(page.locator("#message-preview")).to_contain_text("Hi First0, spring treatments")
    await journey.page_seen("wizard-audience-and-message")

    # And send a test to their own number, and see it delivered
    await page.get_by_role("button", name="Send a test").click()
    await expect(page.locator("#test-result")).to_contain_text(TEST_NUMBER)
    await expect(page.locator("[data-test-state]").first).to_have_text(re.compile("delivered|read"))
    await journey.page_seen("wizard-test-delivered")

    # And send it
    await page.get_by_role("button", name="Send now").click()
    await page.wait_for_url(re.compile(r"/campaigns/[0-9a-f-]{36}$"))
    campaign_id = page.url.rsplit("/", 1)[-1]
    await expect(page.locator("#campaign-state")).to_have_text("running")

    # And pause it while it runs: it stops with recipients left
    await expect(page.locator("#campaign-progress")).not_to_have_attribute("value", "0.0")
    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#campaign-state")).to_have_text("paused")
    await journey.page_seen("campaign-paused")
    paused = await api_progress(stack, tenant, campaign_id)
    assert paused["state"] == "paused"
    assert paused["remaining"] > 0

    # And resume it, and watch the progress reach 100 % without reloading the page
    await page.get_by_role("button", name="Resume").click()
    await expect(page.locator("#campaign-state")).to_have_text(re.compile("running|completed"))
    await expect(page.locator("#campaign-percent")).to_have_text("100.0 %", timeout=120_000)
    await expect(page.locator("#campaign-state")).to_have_text("completed")
    await journey.page_seen("campaign-completed")
    final = await api_progress(stack, tenant, campaign_id)
    assert final["done"] == final["total"] == CUSTOMERS

    # And open the log and one recipient's history
    await page.reload()
    log_rows = page.locator("#recipient-log tbody tr")
    await expect(log_rows).to_have_count(CUSTOMERS)
    await page.get_by_role("link", name="Events of First0 Last0").click()
    await expect(page.locator("h1")).to_contain_text("events")
    await expect(page.locator("table.list tbody")).to_contain_text("sent")
    await journey.page_seen("recipient-history")
    await page.go_back()

    # And download the CSV: one row per recipient
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await download_info.value
    path = ARTIFACTS / "recipients.csv"
    await download.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert len(rows) == CUSTOMERS
    assert {row["phone"] for row in rows} == {phone(i) for i in range(CUSTOMERS)}

    # And suppress a customer's number: the next audience leaves it out, as the API says
    await page.get_by_role("link", name="Suppressions").click()
    await page.get_by_label("Phone number").fill(phone(0))
    await page.get_by_label("Reason (optional)").first.fill("asked by phone")
    await page.get_by_role("button", name="Suppress").click()
    await expect(page.locator("#suppression-list")).to_contain_text(phone(0))
    await journey.page_seen("suppressions")
    await page.get_by_role("link", name="New campaign").first.click()
    await expect(page.locator("#audience-total")).to_contain_text(f"{CUSTOMERS - 1} recipients")
    await expect(page.locator("#audience-preview")).to_contain_text("1 suppressed")
    assert (await api_preview(stack, tenant))["total"] == CUSTOMERS - 1
    await journey.page_seen("wizard-suppressed-excluded")

    # And the rest of their pages
    for name in ("Campaigns", "Credits", "Settings"):
        await page.get_by_role("link", name=name, exact=True).first.click()
        await journey.page_seen(name.lower())

    # And on a phone the campaign list fits the screen
    phone_page = await context.new_page()
    await phone_page.set_viewport_size({"width": 390, "height": 844})
    await phone_page.goto(f"{stack.console_url}/campaigns/{campaign_id}")
    overflow = await phone_page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    await phone_page.screenshot(path=str(ARTIFACTS / "phone-campaign.png"), full_page=True)
    assert overflow <= 0
    await phone_page.close()

    # Then an operator signs in with the operator token and sees the tenant, parked messages and audit log
    await page.get_by_role("button", name="Sign out").click()
    await page.goto(f"{stack.console_url}/operator/signin")
    await page.get_by_label("Operator token").fill(OPERATOR_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/operator/tenants")
    await journey.page_seen("operator-tenants")
    await page.locator(f"a[href='/operator/tenants/{tenant.id}']").first.click()
    await page.get_by_label("Top up (purchased credits)").fill("500")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator(".notice")).to_contain_text("credits were changed")
    await journey.page_seen("operator-tenant")
    await page.get_by_role("link", name="Parked messages").click()
    await journey.page_seen("operator-parked")
    await page.get_by_role("link", name="Audit log").click()
    await expect(page.locator("table.list")).to_contain_text("credits.changed")
    await journey.page_seen("operator-audit")
    await context.close()
    assert len(journey.checked) == 16
