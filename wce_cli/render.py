"""How the CLI shows progress and logs with rich."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "completed": "green",
    "running": "cyan",
    "scheduled": "blue",
    "paused": "yellow",
    "cancelled": "red",
    "failed": "red",
}


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[eta]}"),
        console=console,
    )


_SERVER = object()


def describe(update: dict[str, Any], *, rate: float | None = None, eta_s: Any = _SERVER) -> dict[str, Any]:
    """The bar's fields for one progress update; ``rate`` and ``eta_s`` replace the server's figures
    (the CLI measures them over the last seconds)."""
    state = update["state"]
    style = STATE_STYLES.get(state, "white")
    label = f"[{style}]{state}[/]"
    if update.get("pause_reason"):
        label += f" ({update['pause_reason']})"
    if update.get("waiting"):
        label += f" — {update['waiting']}"
    eta = update.get("eta_s") if eta_s is _SERVER else eta_s
    shown_rate = update["rate_per_s"] if rate is None else rate
    return {
        "description": label,
        "total": max(update["total"], 1),
        "completed": update["done"],
        "rate": f"{shown_rate:.1f}/s" + _paced(update),
        "eta": f"ETA {_duration(eta)}" if eta is not None else "",
    }


def _paced(update: dict[str, Any]) -> str:
    """Shown while Twilio's refusals hold the tenant under its configured rate."""
    configured, effective = update.get("configured_rate_per_s"), update.get("effective_rate_per_s")
    if configured and effective is not None and effective < configured:
        return f" (paced to {effective:.0f} of {configured:g}/s)"
    return ""


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def summary(update: dict[str, Any]) -> Table:
    table = Table(title=f"Campaign {update['campaign_id']} — {update['state']}")
    table.add_column("state")
    table.add_column("recipients", justify="right")
    for state, count in update["counts"].items():
        if count:
            table.add_row(state, f"{count:,}")
    table.add_row("[bold]total[/]", f"[bold]{update['total']:,}[/]")
    if update.get("replies"):
        table.add_row("replies", f"{update['replies']:,} from {update.get('replied', 0):,} recipients")
    return table


LOG_COLUMNS: Sequence[tuple[str, str]] = (
    ("id", "id"),
    ("name", "name"),
    ("phone", "phone"),
    ("state", "state"),
    ("skip_reason", "skip reason"),
    ("attempts", "attempts"),
    ("error_code", "error"),
    ("error_message", "message"),
    ("twilio_sid", "Twilio SID"),
    ("sent_at", "sent"),
    ("delivered_at", "delivered"),
    ("read_at", "read"),
    ("replies", "replies"),
)


def log_table(items: Sequence[dict[str, Any]]) -> Table:
    table = Table()
    for _, title in LOG_COLUMNS:
        table.add_column(title, overflow="fold")
    for item in items:
        table.add_row(*("" if item.get(key) is None else str(item[key]) for key, _ in LOG_COLUMNS))
    return table


def campaign_table(campaigns: Sequence[dict[str, Any]]) -> Table:
    table = Table()
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    for title in ("kind", "state", "recipients", "created", "started", "scheduled for"):
        table.add_column(title, justify="right" if title == "recipients" else "left")
    for campaign in campaigns:
        state = Text(campaign["state"], style=STATE_STYLES.get(campaign["state"], "white"))
        if campaign.get("pause_reason"):
            state.append(f" ({campaign['pause_reason']})")
        if campaign.get("hold_reason") and campaign["state"] == "running":
            state.append(f" (waiting: {campaign['hold_reason']} until {_when(campaign.get('hold_until'))})")
        table.add_row(
            str(campaign["id"]),
            Text(campaign["name"]),
            campaign["kind"],
            state,
            f"{campaign['total']:,}",
            _when(campaign.get("created_at")),
            _when(campaign.get("started_at")),
            _when(campaign.get("scheduled_at")),
        )
    return table


def _when(value: str | None) -> str:
    return "" if not value else value.replace("T", " ")[:19]
