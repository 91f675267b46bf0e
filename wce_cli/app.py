"""``wce``: list and steer campaigns, follow one live, read its recipient logs, export them as CSV,
read the replies customers sent, list the services and locations an audience can filter by;
operators see and act on parked messages, list tenants and set a tenant's WhatsApp messaging limit.

The campaign, service, location, progress, log and export commands take ``--api-key`` (or
``WCE_API_KEY``): campaign, service and location commands talk to the tenant API (``--api-url`` or
``WCE_API_URL``), progress, logs, exports and replies to the tracker (``--tracker-url`` or
``WCE_TRACKER_URL``). ``wce parked`` and ``wce tenants`` take the operator token instead
(``--token`` or ``WCE_OPERATOR_TOKEN``). A mistake prints one line on stderr
and exits non-zero.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from wce_cli.catalogue import list_locations, list_services
from wce_cli.client import FINAL_STATES, TenantApiClient, TrackerClient
from wce_cli.common import DEFAULT_API_URL, ApiKey, ApiUrl, console, require_key, run
from wce_cli.parked import parked_app
from wce_cli.rate import RecentRate, eta_seconds
from wce_cli.reference import CAMPAIGN_STATES, RECIPIENT_STATES, shortcode_rows
from wce_cli.render import campaign_table, describe, log_table, progress_bar, summary
from wce_cli.replies import replies
from wce_cli.tenants import tenants_app

DEFAULT_TRACKER_URL = "http://127.0.0.1:8001"

# Exit codes of `wce progress` besides 0 (completed) and 1 (an error).
EXIT_STOPPED = 3  # paused, a draft never started, or scheduled: it does not move now
EXIT_ENDED_UNFINISHED = 4  # cancelled or failed

app = typer.Typer(
    help=__doc__,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
campaigns_app = typer.Typer(help="List, show and steer campaigns (tenant API).", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")
app.add_typer(parked_app, name="parked")
app.add_typer(tenants_app, name="tenants")
window_app = typer.Typer(
    help="The tenant's sending window (quiet hours): campaigns send only inside it.", no_args_is_help=True
)
app.add_typer(window_app, name="sending-window")
app.command("replies")(replies)
app.command("services")(list_services)
app.command("locations")(list_locations)

TrackerUrl = Annotated[str, typer.Option(envvar="WCE_TRACKER_URL", help="Tracker base URL.")]
State = Annotated[str | None, typer.Option(help="Only these states, comma-separated (see `wce statuses`).")]
ErrorCode = Annotated[int | None, typer.Option(help="Only this Twilio error code.")]
Phone = Annotated[str | None, typer.Option(help="Only this phone number.")]
CampaignId = Annotated[str, typer.Argument(help="The campaign's id (see `wce campaigns list`).")]


async def _follow(tracker_url: str, api_key: str, campaign_id: str, stream: bool) -> dict[str, Any]:
    last: dict[str, Any] = {}
    rate = RecentRate()
    async with TrackerClient(tracker_url, api_key) as client:
        with progress_bar(console) as bar:
            task = bar.add_task("starting", total=1, rate="", eta="")
            async for update in client.follow(campaign_id, stream=stream):
                rate.observe(time.monotonic(), update["done"])
                recent = rate.per_second()
                shown = recent if recent is not None else float(update.get("rate_per_s") or 0.0)
                eta = eta_seconds(update["remaining"], shown) if update["state"] == "running" else None
                if update.get("waiting"):
                    # Nothing moves while it waits: the server's estimate walks the windows.
                    eta = update.get("eta_s")
                bar.update(task, **describe(update, rate=shown, eta_s=eta))
                last = update
    return last


@app.command()
def progress(
    campaign_id: CampaignId,
    tracker_url: TrackerUrl = DEFAULT_TRACKER_URL,
    api_key: ApiKey = "",
    poll: Annotated[bool, typer.Option(help="Poll instead of following the event stream.")] = False,
    show_summary: Annotated[
        bool, typer.Option("--summary/--no-summary", help="End with a table by state.")
    ] = True,
) -> None:
    """Show a campaign's progress live until it ends or stops, then a summary by state.

    Exit code 0: completed; 3: paused, scheduled (not started yet) or a draft; 4: cancelled or
    failed. A campaign waiting for its tenant's sending window is followed on: it resumes by itself.
    """
    final = run(_follow(tracker_url, require_key(api_key), campaign_id, stream=not poll))
    if show_summary:
        console.print(summary(final))
    state, reason = final["state"], final.get("pause_reason")
    if state == "completed":
        return
    if state == "paused":
        console.print(
            f"Campaign paused ({reason or 'no reason given'}): nothing more is sent until it is resumed"
            f" — wce campaigns resume {campaign_id}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        raise typer.Exit(EXIT_STOPPED)
    if state == "scheduled":
        console.print(
            f"Campaign {final.get('waiting') or 'scheduled'}: it starts by itself"
            f" — wce campaigns reschedule {campaign_id} --at …, or wce campaigns cancel {campaign_id}",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        raise typer.Exit(EXIT_STOPPED)
    if state == "draft":
        console.print(f"Campaign is a draft — start it with: wce campaigns start {campaign_id}", markup=False)
        raise typer.Exit(EXIT_STOPPED)
    console.print(f"Campaign {state}" + (f" ({reason})" if reason else ""), markup=False)
    raise typer.Exit(EXIT_ENDED_UNFINISHED if state in FINAL_STATES else 1)


@app.command()
def logs(
    campaign_id: CampaignId,
    tracker_url: TrackerUrl = DEFAULT_TRACKER_URL,
    api_key: ApiKey = "",
    state: State = None,
    error_code: ErrorCode = None,
    phone: Phone = None,
    after: Annotated[int, typer.Option(help="Start after this recipient id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List a campaign's recipients with their state, error and times."""
    key = require_key(api_key)

    async def fetch() -> dict[str, Any]:
        async with TrackerClient(tracker_url, key) as client:
            return await client.recipients(
                campaign_id, state=state, error_code=error_code, phone=phone, after=after, limit=limit
            )

    page = run(fetch())
    console.print(log_table(page["items"]))
    if page["next_after"] is not None:
        console.print(f"more: --after {page['next_after']}")


@app.command("export-csv")
def export_csv(
    campaign_id: CampaignId,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    tracker_url: TrackerUrl = DEFAULT_TRACKER_URL,
    api_key: ApiKey = "",
    state: State = None,
    error_code: ErrorCode = None,
    phone: Phone = None,
    bom: Annotated[bool, typer.Option(help="Start with a UTF-8 byte order mark (for Excel).")] = False,
) -> None:
    """Download a campaign's recipient log as CSV."""
    key = require_key(api_key)

    async def download() -> int:
        async with TrackerClient(tracker_url, key) as client:
            return await client.export_csv(
                campaign_id, output, bom=bom, state=state, error_code=error_code, phone=phone
            )

    written = run(download())
    console.print(f"wrote {written:,} bytes to {output}", soft_wrap=True, highlight=False, markup=False)


def _each(values: list[str] | None) -> list[str] | None:
    """Repeated options, each of which may also list values separated by commas."""
    found = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return found or None


@campaigns_app.command("list")
def campaigns_list(
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 50,
    state: Annotated[
        list[str] | None,
        typer.Option(
            help="Only campaigns in this state; repeat it or separate states by commas (see `wce statuses`)."
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Only campaigns of this kind: campaign, test or manual (repeatable)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only campaigns whose name contains this.")] = None,
    created_after: Annotated[
        str | None,
        typer.Option(help="Only campaigns created at or after this ISO 8601 time (with its offset)."),
    ] = None,
    created_before: Annotated[
        str | None, typer.Option(help="Only campaigns created before this ISO 8601 time (with its offset).")
    ] = None,
) -> None:
    """The tenant's campaigns, newest first."""
    key = require_key(api_key)

    async def fetch() -> list[dict[str, Any]]:
        async with TenantApiClient(api_url, key) as client:
            return await client.campaigns(
                limit=limit,
                state=_each(state),
                kind=_each(kind),
                name=name,
                created_after=created_after,
                created_before=created_before,
            )

    console.print(campaign_table(run(fetch())))


@campaigns_app.command("show")
def campaigns_show(campaign_id: CampaignId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "") -> None:
    """One campaign: state, pause reason, audience and template."""
    key = require_key(api_key)

    async def fetch() -> dict[str, Any]:
        async with TenantApiClient(api_url, key) as client:
            return await client.campaign(campaign_id)

    campaign = run(fetch())
    console.print(campaign_table([campaign]))
    console.print_json(data={"audience": campaign["audience"], "template": campaign["template"]})


def _act(action: str, campaign_id: str, api_url: str, api_key: str, reason: str | None = None) -> None:
    key = require_key(api_key)

    async def act() -> dict[str, Any]:
        async with TenantApiClient(api_url, key) as client:
            return await client.act(campaign_id, action, reason)

    campaign = run(act())
    console.print(f"campaign {campaign['id']}: {campaign['state']}", highlight=False, markup=False)


@campaigns_app.command("start")
def campaigns_start(campaign_id: CampaignId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "") -> None:
    """Start a draft campaign."""
    _act("start", campaign_id, api_url, api_key)


At = Annotated[
    str,
    typer.Option(
        help="When: a local date and time (2026-12-24T09:00, in --timezone) or an instant with its offset."
    ),
]
Timezone = Annotated[
    str | None, typer.Option(help="IANA zone of --at (e.g. Europe/Paris); default: the tenant's.")
]


def _schedule(campaign_id: str, at: str, timezone: str | None, api_url: str, api_key: str) -> None:
    key = require_key(api_key)

    async def schedule() -> dict[str, Any]:
        async with TenantApiClient(api_url, key) as client:
            return await client.schedule(campaign_id, at, timezone)

    campaign = run(schedule())
    console.print(
        f"campaign {campaign['id']}: {campaign['state']} for {campaign['scheduled_at']}"
        f" ({campaign['schedule_timezone']})",
        highlight=False,
        markup=False,
    )


@campaigns_app.command("schedule")
def campaigns_schedule(
    campaign_id: CampaignId,
    at: At,
    timezone: Timezone = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
) -> None:
    """Schedule a draft campaign: it starts by itself at that time, its audience taken then."""
    _schedule(campaign_id, at, timezone, api_url, api_key)


@campaigns_app.command("reschedule")
def campaigns_reschedule(
    campaign_id: CampaignId,
    at: At,
    timezone: Timezone = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
) -> None:
    """Move a scheduled campaign to another time (before it starts; cancel it with `cancel`)."""
    _schedule(campaign_id, at, timezone, api_url, api_key)


@campaigns_app.command("pause")
def campaigns_pause(
    campaign_id: CampaignId,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
    reason: Annotated[str | None, typer.Option(help="Why (shown with the campaign).")] = None,
) -> None:
    """Pause a running campaign (sending stops within a second)."""
    _act("pause", campaign_id, api_url, api_key, reason)


@campaigns_app.command("resume")
def campaigns_resume(
    campaign_id: CampaignId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = ""
) -> None:
    """Resume a paused campaign."""
    _act("resume", campaign_id, api_url, api_key)


@campaigns_app.command("cancel")
def campaigns_cancel(
    campaign_id: CampaignId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = ""
) -> None:
    """Cancel a campaign for good (recipients not yet sent are never sent)."""
    _act("cancel", campaign_id, api_url, api_key)


def _print_window(answer: dict[str, Any]) -> None:
    window = answer["window"]
    if window is None:
        console.print(f"no sending window: campaigns send at any time ({answer['timezone']})", markup=False)
        return
    days = ",".join(window["days"])
    where = "the recipient's zone where their country has one, else " if window["recipient_timezone"] else ""
    console.print(
        f"{days} {window['start']}–{window['end']} ({where}{answer['timezone']}): "
        + (
            f"open, closes {answer['next_closing']}"
            if answer["open_now"]
            else f"closed, opens {answer['next_opening']}"
        ),
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def _window_call(api_url: str, api_key: str, window: dict[str, Any] | None, change: bool) -> None:
    key = require_key(api_key)

    async def call() -> dict[str, Any]:
        async with TenantApiClient(api_url, key) as client:
            if change:
                return await client.set_sending_window(window)
            return await client.sending_window()

    _print_window(run(call()))


DAY_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_days(text: str) -> list[str]:
    """``mon-sat`` or ``mon,wed,fri`` (or both: ``mon-wed,sat``) → the days, in week order."""
    days: list[str] = []
    for part in text.lower().split(","):
        first, dash, last = part.strip().partition("-")
        if first not in DAY_ORDER or (dash and last not in DAY_ORDER):
            raise typer.BadParameter(f"{part.strip()!r}: days are mon, tue, wed, thu, fri, sat, sun")
        start, end = DAY_ORDER.index(first), DAY_ORDER.index(last or first)
        if end < start:
            raise typer.BadParameter(f"{part.strip()!r}: a range runs from Monday towards Sunday")
        days.extend(DAY_ORDER[start : end + 1])
    return [day for day in DAY_ORDER if day in days]


@window_app.command("show")
def window_show(api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "") -> None:
    """The tenant's sending window, and whether it is open now."""
    _window_call(api_url, api_key, None, change=False)


@window_app.command("set")
def window_set(
    days: Annotated[str, typer.Option(help="Days: mon-sat, or mon,wed,fri.")],
    start: Annotated[str, typer.Option(help="Opens at HH:MM (local time).")],
    end: Annotated[str, typer.Option(help="Closes at HH:MM (24:00 for midnight).")],
    recipient_timezone: Annotated[
        bool, typer.Option(help="In each recipient's zone where their number's country has a single one.")
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
) -> None:
    """Campaigns send only inside this window; running ones hold at its end and resume at its opening."""
    window = {"days": parse_days(days), "start": start, "end": end, "recipient_timezone": recipient_timezone}
    _window_call(api_url, api_key, window, change=True)


@window_app.command("clear")
def window_clear(api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "") -> None:
    """Remove the window: campaigns send at any time."""
    _window_call(api_url, api_key, None, change=True)


@app.command()
def shortcodes() -> None:
    """The {shortcodes} a template may use, and what each becomes when its value is missing."""
    table = Table("shortcode", "kind", "becomes", "when missing", title="Template shortcodes")
    for row in shortcode_rows():
        table.add_row(*row)
    console.print(table)


@app.command()
def statuses() -> None:
    """What each recipient state (the --state filter of logs and export-csv) and campaign state means."""
    recipients = Table("state", "meaning", title="Recipient states")
    for name, meaning in RECIPIENT_STATES.items():
        recipients.add_row(name, meaning)
    console.print(recipients)
    campaigns = Table("state", "meaning", title="Campaign states")
    for name, meaning in CAMPAIGN_STATES.items():
        campaigns.add_row(name, meaning)
    console.print(campaigns)
