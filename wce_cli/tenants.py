"""``wce tenants``: the operator's tenant settings that tenants may not change themselves.

Talks to the segmenter's operator API (``/v1/operator/tenants``) with the operator token."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wce_cli.client import ApiClient
from wce_cli.common import console, fail, require_token, run
from wce_cli.parked import DEFAULT_OPERATOR_URL, OperatorToken, OperatorUrl

tenants_app = typer.Typer(help="A tenant's operator-only settings (operator token).", no_args_is_help=True)

# WhatsApp's messaging-limit tiers (unique numbers per moving 24 hours).
TIERS = ("250", "1000", "2000", "10000", "100000", "unlimited")


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
