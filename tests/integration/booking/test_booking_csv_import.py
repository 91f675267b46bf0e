"""CSV import: valid rows kept, rejected rows listed by line number and reason, run as a command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from booking_api import new_tenant

from services.segmenter.booking.csv_rows import BadFile, import_rows
from tests.support import ROOT, IsolatedEnvironment

CUSTOMERS = """external_id,first_name,last_name,phone
c1,Ann,Lee,(415) 555-0001
c2,Bob,,+1 415 555 0001
,No,Id,+14155550003
c4,"Multi
Line",Name,call me
c5,Eve,,+14155550005,extra
c6,Fay,,
"""

APPOINTMENTS = """external_id,customer_id,service_id,starts_at,created_at,status
a1,c1,,2026-04-01 10:00,2026-03-01 09:00,approved
a2,c1,,2026-04-01T10:00:00+00:00,not a date,approved
a3,ghost,,2026-04-01 10:00,2026-03-01 09:00,approved
a4,c2,,2026-04-02 10:00,2026-03-01 09:00,teleported
"""


async def test_valid_rows_are_kept_and_rejected_ones_listed_by_line(pool: asyncpg.Pool) -> None:
    # Given a tenant in New York and files with good and bad rows
    tenant_id, _ = await new_tenant(pool, tz="America/New_York")

    # When the customers and then the appointments are imported
    customers = await import_rows(
        pool, tenant_id=tenant_id, kind="customers", lines=CUSTOMERS.splitlines(True)
    )
    appointments = await import_rows(
        pool, tenant_id=tenant_id, kind="appointments", lines=APPOINTMENTS.splitlines(True)
    )

    # Then valid rows are kept (an unparseable phone flagged, the same number in two formats stored once
    # as E.164) and each rejected row is named by its line in the file
    assert (customers.inserted, [(f.row, f.field) for f in customers.flagged]) == (4, [(6, "phone")])
    assert [(r.row, r.field) for r in customers.rejected] == [(4, "external_id"), (7, "row")]
    assert [(r.row, r.field) for r in appointments.rejected] == [
        (3, "created_at"),
        (4, "customer_id"),
        (5, "status"),
    ]
    phones = await pool.fetch(
        "SELECT DISTINCT phone_e164 FROM customers WHERE tenant_id = $1 AND phone_e164 IS NOT NULL", tenant_id
    )
    assert [r["phone_e164"] for r in phones] == ["+14155550001"]
    # And a time without an offset is read in the tenant's time zone
    starts = await pool.fetchval("SELECT starts_at FROM appointments WHERE tenant_id = $1", tenant_id)
    assert starts.isoformat() == "2026-04-01T14:00:00+00:00"


async def test_a_file_with_unknown_columns_is_refused_before_anything_is_written(pool: asyncpg.Pool) -> None:
    tenant_id, _ = await new_tenant(pool)
    with pytest.raises(BadFile, match="nickname"):
        await import_rows(
            pool, tenant_id=tenant_id, kind="customers", lines=["external_id,nickname\n", "c1,x\n"]
        )
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id) == 0


async def test_the_import_command_reports_rejected_rows_and_exits_1(
    pool: asyncpg.Pool, isolated_env: IsolatedEnvironment, tmp_path: Path
) -> None:
    # Given a customers file with one bad row
    tenant_id, _ = await new_tenant(pool)
    source = tmp_path / "customers.csv"
    source.write_text(CUSTOMERS)
    rejects = tmp_path / "rejects.csv"

    # When the command imports it
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "services.segmenter.booking.csv_import",
            "customers",
            str(source),
            "--tenant",
            str(tenant_id),
            "--rejects",
            str(rejects),
        ],
        cwd=ROOT,
        env={**os.environ, **isolated_env.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it keeps the valid rows, lists the rejected ones by line and exits with 1
    assert result.returncode == 1, result.stderr
    assert "rejected 2" in result.stderr
    assert rejects.read_text().splitlines()[1:] == [
        "4,external_id,Field required",
        "7,row,more cells than columns",
    ]
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id) == 4
