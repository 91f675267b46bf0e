"""``wce parked``: messages the consumers parked (``<queue>.dlq``) — list, show, replay, purge.

Talks to the segmenter's operator API (``/v1/operator/parked``) with the operator token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from wce_cli.client import ApiClient
from wce_cli.common import console, fail, require_token, run

parked_app = typer.Typer(
    help="Messages a consumer could not process: list, show, replay, purge (operator token).",
    no_args_is_help=True,
)

OperatorUrl = Annotated[
    str,
    typer.Option(
        "--api-url", envvar=["WCE_API_URL", "WCE_OPERATOR_API_URL"], help="Segmenter (tenant API) base URL."
    ),
]
OperatorToken = Annotated[str, typer.Option("--token", envvar="WCE_OPERATOR_TOKEN", help="Operator token.")]
Ids = Annotated[list[str] | None, typer.Option("--id", help="A parked message's id (repeatable).")]
All = Annotated[bool, typer.Option("--all", help="Every parked message of the queue (up to --limit).")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="At most this many messages.")]

DEFAULT_OPERATOR_URL = "http://127.0.0.1:8000"
PARKED = "/v1/operator/parked"
# A replay or purge of up to 1,000 messages is one request: it gets longer than a tenant call.
OPERATOR_TIMEOUT = httpx.Timeout(60.0)


def _run(api_url: str, token: str, request: Callable[[ApiClient], Awaitable[Any]]) -> Any:
    key = require_token(token)

    async def call() -> Any:
        async with ApiClient(api_url, key, timeout=OPERATOR_TIMEOUT) as client:
            return await request(client)

    return run(call())


def _selection(ids: list[str] | None, everything: bool, limit: int) -> dict[str, Any]:
    if bool(ids) == everything:
        fail("give either --id (one or more) or --all", code=2)
    return {"ids": ids, "limit": limit} if ids else {"all": True, "limit": limit}


def _settle(queue: str, action: str, done: str, selection: dict[str, Any], api_url: str, token: str) -> None:
    """Replay or purge the selected messages of ``queue``; the answer counts them under ``done``."""
    answer = _run(api_url, token, lambda api: api.post_json(f"{PARKED}/{queue}/{action}", selection))
    console.print(f"{done} {answer[done]:,} message(s) of {queue}")


@parked_app.command("list")
def list_parked(api_url: OperatorUrl = DEFAULT_OPERATOR_URL, token: OperatorToken = "") -> None:
    """How many messages each queue has parked."""
    answer = _run(api_url, token, lambda api: api.get_json(PARKED))
    table = Table("queue", "parked")
    for row in answer["queues"]:
        style = "red" if row["parked"] else "dim"
        table.add_row(row["queue"], f"[{style}]{row['parked']:,}[/]")
    console.print(table)


@parked_app.command("show")
def show_parked(
    queue: str,
    api_url: OperatorUrl = DEFAULT_OPERATOR_URL,
    token: OperatorToken = "",
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """The first messages parked from QUEUE: id, reason, error, deliveries, origin and body."""
    answer = _run(api_url, token, lambda api: api.get_json(f"{PARKED}/{queue}", limit=limit))
    console.print(f"[bold]{answer['queue']}[/]: {answer['parked']:,} parked")
    for message in answer["messages"]:
        console.print(
            f"\n[bold]{message['id']}[/]  {message['reason']}  parked {message['parked_at']}"
            f"  after {message['delivery_count']} deliveries"
        )
        console.print(
            f"  from {message['exchange'] or '(default)'} / {message['routing_key']}  type {message['type']}"
        )
        console.print(f"  error: {message['error']}", markup=False)
        console.print(f"  body ({message['size']:,} bytes): {message['body']}", markup=False)


@parked_app.command("replay")
def replay_parked(
    queue: str,
    ids: Ids = None,
    everything: All = False,
    limit: Limit = 1000,
    api_url: OperatorUrl = DEFAULT_OPERATOR_URL,
    token: OperatorToken = "",
) -> None:
    """Publish parked messages of QUEUE again to where they first went (after fixing the cause)."""
    _settle(queue, "replay", "replayed", _selection(ids, everything, limit), api_url, token)


@parked_app.command("purge")
def purge_parked(
    queue: str,
    ids: Ids = None,
    everything: All = False,
    limit: Limit = 1000,
    api_url: OperatorUrl = DEFAULT_OPERATOR_URL,
    token: OperatorToken = "",
) -> None:
    """Delete parked messages of QUEUE for good."""
    _settle(queue, "purge", "purged", _selection(ids, everything, limit), api_url, token)
