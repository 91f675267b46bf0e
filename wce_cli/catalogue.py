"""``wce services`` and ``wce locations``: the tenant's services and locations as its booking data
names them, with the external ids an audience's ``service_ids`` and ``location_ids`` take.

Talks to the tenant API (``/v1/services``, ``/v1/locations``), following its pages up to ``--limit``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from wce_cli.client import TenantApiClient
from wce_cli.common import DEFAULT_API_URL, ApiKey, ApiUrl, console, require_key, run

# The API's largest page.
PAGE = 1000

Name = Annotated[str | None, typer.Option(help="Only those whose name contains this (case-insensitive).")]
Limit = Annotated[int, typer.Option(min=1, max=100_000, help="At most this many, in external-id order.")]


def _fetch_all(api_url: str, api_key: str, path: str, name: str | None, limit: int) -> list[dict[str, Any]]:
    key = require_key(api_key)

    async def fetch() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after: str | None = None
        async with TenantApiClient(api_url, key) as client:
            while len(items) < limit:
                page = await client.get_json(
                    path, name=name, after=after, limit=min(PAGE, limit - len(items))
                )
                items.extend(page["items"])
                after = page["next_after"]
                if after is None:
                    break
        return items

    return run(fetch())


def _print(items: list[dict[str, Any]], columns: tuple[str, ...], what: str) -> None:
    if not items:
        console.print(f"no {what}")
        return
    table = Table(*columns)
    for item in items:
        table.add_row(*(item.get(column) or "" for column in columns))
    console.print(table)


def list_services(
    api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "", name: Name = None, limit: Limit = 1000
) -> None:
    """The tenant's services: the ids `audience.service_ids` takes, with their names."""
    _print(_fetch_all(api_url, api_key, "/v1/services", name, limit), ("external_id", "name"), "services")


def list_locations(
    api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = "", name: Name = None, limit: Limit = 1000
) -> None:
    """The tenant's locations: the ids `audience.location_ids` takes, with names and addresses."""
    _print(
        _fetch_all(api_url, api_key, "/v1/locations", name, limit),
        ("external_id", "name", "address"),
        "locations",
    )
