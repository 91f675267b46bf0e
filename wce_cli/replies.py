"""``wce replies``: the messages a tenant's customers sent back — all of them, a campaign's, or one
recipient's — in id order, paged by ``--after`` like ``wce logs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from wce_cli.client import TrackerClient
from wce_cli.common import console, fail, require_key, run

DEFAULT_TRACKER_URL = "http://127.0.0.1:8001"


def replies_table(items: Sequence[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("id", justify="right")
    table.add_column("received", no_wrap=True)
    table.add_column("phone", no_wrap=True)
    table.add_column("message", overflow="fold")
    table.add_column("keyword")
    table.add_column("campaign", overflow="fold")
    table.add_column("recipient", justify="right")
    for item in items:
        table.add_row(
            str(item["id"]),
            str(item["received_at"]).replace("T", " ")[:19],
            item["phone"],
            Text(item["body"]),
            item["action"] or "",
            item["campaign_id"] or "",
            "" if item["recipient_id"] is None else str(item["recipient_id"]),
        )
    return table


def replies(
    campaign_id: Annotated[
        str | None, typer.Argument(help="Only the replies to this campaign's messages.", show_default=False)
    ] = None,
    recipient: Annotated[
        int | None, typer.Option(help="Only this recipient's replies (with a campaign id).", min=1)
    ] = None,
    phone: Annotated[str | None, typer.Option(help="Only this phone number (without a campaign id).")] = None,
    tracker_url: Annotated[str, typer.Option(envvar="WCE_TRACKER_URL", help="Tracker base URL.")] = (
        DEFAULT_TRACKER_URL
    ),
    api_key: Annotated[
        str, typer.Option(envvar="WCE_API_KEY", help="Tenant API key.", show_default=False)
    ] = "",
    after: Annotated[int, typer.Option(help="Start after this reply id.", min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List the replies customers sent: every one, a campaign's (CAMPAIGN_ID), or one recipient's.

    A reply belongs to the last message the engine sent its number in the 24 hours before it.
    """
    key = require_key(api_key)
    if recipient is not None and campaign_id is None:
        fail("--recipient needs the campaign id", code=2)
    if phone is not None and campaign_id is not None:
        fail("--phone lists the tenant's replies: give it without a campaign id", code=2)
    if campaign_id is None:
        path = "/v1/replies"
    elif recipient is None:
        path = f"/v1/campaigns/{campaign_id}/replies"
    else:
        path = f"/v1/campaigns/{campaign_id}/recipients/{recipient}/replies"

    async def fetch() -> dict[str, Any]:
        async with TrackerClient(tracker_url, key) as client:
            page: dict[str, Any] = await client.get_json(path, phone=phone, after=after, limit=limit)
            return page

    page = run(fetch())
    console.print(replies_table(page["items"]))
    if page["next_after"] is not None:
        console.print(f"more: --after {page['next_after']}")
