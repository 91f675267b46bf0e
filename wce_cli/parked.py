"""``wce parked``: messages the consumers parked (``<queue>.dlq``) — list, show, replay, purge.

Talks to the segmenter's operator API (``/v1/operator/parked``) with the operator token."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from wce_cli.client import raise_for
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


async def _call(api_url: str, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=api_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        response = await http.request(method, f"/v1/operator/parked{path}", **kwargs)
        raise_for(response)
        result: dict[str, Any] = response.json()
        return result


def _run(api_url: str, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    return run(_call(api_url, require_token(token), method, path, **kwargs))


def _selection(ids: list[str] | None, everything: bool, limit: int) -> dict[str, Any]:
    if bool(ids) == everything:
        fail("give either --id (one or more) or --all", code=2)
    return {"ids": ids, "limit": limit} if ids else {"all": True, "limit": limit}


@parked_app.command("list")
def list_parked(api_url: OperatorUrl = DEFAULT_OPERATOR_URL, token: OperatorToken = "") -> None:
    """How many messages each queue has parked."""
    answer = _run(api_url, token, "GET", "")
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
    answer = _run(api_url, token, "GET", f"/{queue}", params={"limit": limit})
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
    answer = _run(api_url, token, "POST", f"/{queue}/replay", json=_selection(ids, everything, limit))
    console.print(f"replayed {answer['replayed']:,} message(s) of {queue}")


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
    answer = _run(api_url, token, "POST", f"/{queue}/purge", json=_selection(ids, everything, limit))
    console.print(f"purged {answer['purged']:,} message(s) of {queue}")
