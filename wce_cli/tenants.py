"""``wce tenants``: the operator's tenant settings that tenants may not change themselves.

Talks to the segmenter's operator API (``/v1/operator/tenants``) with the operator token."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from wce_cli.client import ApiClient
from wce_cli.common import console, fail, require_token, run
from wce_cli.parked import DEFAULT_OPERATOR_URL, OperatorToken, OperatorUrl

tenants_app = typer.Typer(
    help="Tenants and their operator-only settings (operator token).", no_args_is_help=True
)

# WhatsApp's messaging-limit tiers (unique numbers per moving 24 hours).
TIERS = ("250", "1000", "2000", "10000", "100000", "unlimited")


@tenants_app.command("list")
def list_tenants(
    api_url: OperatorUrl = DEFAULT_OPERATOR_URL,
    token: OperatorToken = "",
    name: Annotated[str | None, typer.Option(help="Only tenants whose name contains this.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Only active, or only deactivated, tenants.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 100,
) -> None:
    """Every tenant, newest first: whether it is active, its rate, messaging limit and credits."""
    key = require_token(token)

    async def call() -> dict[str, Any]:
        async with ApiClient(api_url, key) as client:
            page: dict[str, Any] = await client.get_json(
                "/v1/operator/tenants",
                name=name,
                active=None if active is None else str(active).lower(),
                limit=limit,
            )
            return page

    console.print(tenant_table(run(call())["items"]))


def tenant_table(tenants: list[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True)
    for title in ("name", "status", "rate", "messaging limit", "credits", "created"):
        table.add_column(title)
    for tenant in tenants:
        table.add_row(
            str(tenant["id"]),
            Text(tenant["name"]),
            "active" if tenant["active"] else "deactivated",
            "unlimited" if tenant["rate_per_second"] is None else f"{tenant['rate_per_second']:,}/s",
            "unlimited" if tenant["messaging_limit"] is None else f"{tenant['messaging_limit']:,}",
            "—" if tenant["credits_available"] is None else f"{tenant['credits_available']:,}",
            str(tenant["created_at"])[:19].replace("T", " "),
        )
    return table


@tenants_app.command("set-messaging-limit")
def set_messaging_limit(
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id.")],
    limit: Annotated[str, typer.Argument(help=f"One of {', '.join(TIERS)}.", show_default=False)],
    api_url: OperatorUrl = DEFAULT_OPERATOR_URL,
    token: OperatorToken = "",
) -> None:
    """Set the tenant's WhatsApp messaging limit: unique numbers its sender may message in a moving
    24 hours. Campaigns that would pass it are held until the window has room."""
    if limit not in TIERS:
        fail(f"limit: must be one of {', '.join(TIERS)}", code=2)
    key = require_token(token)
    value: Any = limit if limit == "unlimited" else int(limit)

    async def call() -> dict[str, Any]:
        async with ApiClient(api_url, key) as client:
            result: dict[str, Any] = await client.patch_json(
                f"/v1/operator/tenants/{tenant_id}", {"messaging_limit": value}
            )
            return result

    tenant = run(call())
    shown = tenant["messaging_limit"]
    console.print(
        f"tenant {tenant['id']}: messaging limit {'unlimited' if shown is None else f'{shown:,}'}",
        highlight=False,
        markup=False,
    )
