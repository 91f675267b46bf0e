"""``python -m services.segmenter.booking.csv_import KIND FILE --tenant ID``: import booking data
from a CSV file with a progress bar; valid rows are kept, rejected rows listed by line and reason.

Exit status: 0 when every row was kept, 1 when some were rejected, 2 when the file could not be
imported at all (unknown tenant, unknown or missing columns).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TransferSpeedColumn
from rich.table import Table

from services.segmenter.booking.csv_rows import BadFile, ImportReport, Kind, import_rows
from services.segmenter.booking.service import TenantNotFound
from shared.db import create_pool
from shared.settings import get_settings

console = Console(stderr=True)
SHOWN_REJECTIONS = 50


def _lines(path: Path, progress: Progress, task: TaskID) -> Iterator[str]:
    with path.open("rb") as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""):
            progress.update(task, completed=raw.tell())
            yield line


async def _run(tenant: UUID, kind: Kind, path: Path, size: int, batch_size: int, rejects: Path | None) -> int:
    settings = get_settings()
    pool = await create_pool(settings.database_url, min_size=1, max_size=2, retry_s=10)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, TextColumn("{task.fields[status]}"), console=console) as progress:
            task = progress.add_task(f"{kind} {path.name}", total=size, status="")

            def show(report: ImportReport) -> None:
                progress.update(task, status=f"kept {report.kept:,} · rejected {len(report.rejected):,}")

            report = await import_rows(
                pool,
                tenant_id=tenant,
                kind=kind,
                lines=_lines(path, progress, task),
                batch_size=batch_size,
                on_batch=show,
            )
            show(report)
    except (BadFile, TenantNotFound) as exc:
        console.print(f"[red]cannot import {path}: {exc}")
        return 2
    finally:
        await pool.close()
    _summarise(report, rejects)
    return 1 if report.rejected else 0


def _summarise(report: ImportReport, rejects: Path | None) -> None:
    console.print(
        f"inserted {report.inserted:,}, updated {report.updated:,}, "
        f"kept with an unusable phone {len(report.flagged):,}, rejected {len(report.rejected):,}"
    )
    if report.rejected:
        table = Table("line", "field", "reason", title="rejected rows")
        for issue in report.rejected[:SHOWN_REJECTIONS]:
            table.add_row(str(issue.row), issue.field, issue.message)
        console.print(table)
        if len(report.rejected) > SHOWN_REJECTIONS:
            console.print(f"… and {len(report.rejected) - SHOWN_REJECTIONS:,} more")
    if rejects is not None:
        with rejects.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "field", "reason"])
            writer.writerows([issue.row, issue.field, issue.message] for issue in report.rejected)


def main(
    kind: Annotated[Kind, typer.Argument(help="customers, appointments, services, locations or staff")],
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[UUID, typer.Option(help="The tenant the rows belong to.")],
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 5_000,
    rejects: Annotated[
        Path | None, typer.Option(help="Also write the rejected rows to this CSV file.")
    ] = None,
) -> None:
    raise typer.Exit(asyncio.run(_run(tenant, kind, path, path.stat().st_size, batch_size, rejects)))


if __name__ == "__main__":
    typer.run(main)
