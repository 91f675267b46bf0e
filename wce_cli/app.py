"""``python -m wce_cli``: follow a campaign, read its recipient logs, export them as CSV."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from wce_cli.client import ApiError, TrackerClient
from wce_cli.parked import parked_app
from wce_cli.render import describe, log_table, progress_bar, summary

app = typer.Typer(
    help="WhatsApp campaign engine: campaign progress, logs and CSV exports.", no_args_is_help=True
)
app.add_typer(parked_app, name="parked")
console = Console()

ApiUrl = Annotated[str, typer.Option(envvar="WCE_API_URL", help="Tracker base URL.")]
ApiKey = Annotated[str, typer.Option(envvar="WCE_API_KEY", help="Tenant API key.")]
State = Annotated[str | None, typer.Option(help="Only these states (comma-separated).")]
ErrorCode = Annotated[int | None, typer.Option(help="Only this Twilio error code.")]
Phone = Annotated[str | None, typer.Option(help="Only this phone number.")]

DEFAULT_API_URL = "http://127.0.0.1:8001"


def _fail(exc: ApiError) -> typer.Exit:
    console.print(f"[red]{exc}[/]")
    return typer.Exit(1)


async def _follow(api_url: str, api_key: str, campaign_id: str, stream: bool) -> dict[str, Any]:
    last: dict[str, Any] = {}
    async with TrackerClient(api_url, api_key) as client:
        with progress_bar() as bar:
            task = bar.add_task("starting", total=1, rate="", eta="")
            async for update in client.follow(campaign_id, stream=stream):
                bar.update(task, **describe(update))
                last = update
    return last


@app.command()
def progress(
    campaign_id: str,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
    poll: Annotated[bool, typer.Option(help="Poll instead of following the event stream.")] = False,
) -> None:
    """Show a campaign's progress live until it ends, then a summary by state."""
    try:
        final = asyncio.run(_follow(api_url, api_key, campaign_id, stream=not poll))
    except ApiError as exc:
        raise _fail(exc) from exc
    console.print(summary(final))
    if final["state"] != "completed":
        raise typer.Exit(2)


@app.command()
def logs(
    campaign_id: str,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
    state: State = None,
    error_code: ErrorCode = None,
    phone: Phone = None,
    after: Annotated[int, typer.Option(help="Start after this recipient id.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List a campaign's recipients with their state, error and times."""

    async def fetch() -> dict[str, Any]:
        async with TrackerClient(api_url, api_key) as client:
            return await client.recipients(
                campaign_id, state=state, error_code=error_code, phone=phone, after=after, limit=limit
            )

    try:
        page = asyncio.run(fetch())
    except ApiError as exc:
        raise _fail(exc) from exc
    console.print(log_table(page["items"]))
    if page["next_after"] is not None:
        console.print(f"more: --after {page['next_after']}")


@app.command("export-csv")
def export_csv(
    campaign_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = "",
    state: State = None,
    error_code: ErrorCode = None,
    phone: Phone = None,
    bom: Annotated[bool, typer.Option(help="Start with a UTF-8 byte order mark (for Excel).")] = False,
) -> None:
    """Download a campaign's recipient log as CSV."""

    async def download() -> int:
        async with TrackerClient(api_url, api_key) as client:
            return await client.export_csv(
                campaign_id, output, bom=bom, state=state, error_code=error_code, phone=phone
            )

    try:
        written = asyncio.run(download())
    except ApiError as exc:
        raise _fail(exc) from exc
    console.print(f"wrote {written:,} bytes to {output}")
