"""The README's promise: `make demo` works from a fresh clone of the repository."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, IsolatedEnvironment

pytestmark = pytest.mark.slow


def test_make_demo_runs_a_campaign_from_a_fresh_clone(
    isolated_env: IsolatedEnvironment, tmp_path: Path
) -> None:
    # Given a fresh clone of the committed repository
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)

    # When `make demo` runs there against this test's database and broker vhost
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WCE_", "VIRTUAL_ENV"))},
        "WCE_DATABASE_URL": isolated_env.database_url,
        "WCE_AMQP_URL": isolated_env.amqp_url,
        "COLUMNS": "120",
    }
    result = subprocess.run(
        ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    output = result.stdout + result.stderr

    # Then it ends well, having sent the campaign and written the per-recipient CSV
    assert result.returncode == 0, output[-5000:]
    assert "numbers messaged twice: 0" in output, output[-3000:]
    match = re.search(r"Per-recipient CSV: (\S+\.csv)", result.stdout)
    assert match, output[-3000:]
    with Path(match.group(1)).open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 4000
    assert {"phone", "state", "twilio_sid"} <= set(rows[0])
    assert all(row["state"] in {"sent", "delivered", "read"} for row in rows)
