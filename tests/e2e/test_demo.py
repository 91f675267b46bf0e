"""The README's promise: `make demo` works from a fresh clone of the repository, leaves what is
needed to go on exploring, and `make demo-clean` removes what it left."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, IsolatedEnvironment

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_env() -> Iterator[IsolatedEnvironment]:
    """A database and a broker vhost of the demo's own, as on a fresh machine: ``make demo``
    creates and migrates the database. (The session's database holds what every earlier test of
    the worker left, up to a hundred thousand rows in the audience tables.)"""
    with IsolatedEnvironment() as env:
        yield env


def test_make_demo_runs_a_campaign_from_a_fresh_clone(demo_env: IsolatedEnvironment, tmp_path: Path) -> None:
    # Given a fresh clone of the committed repository
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)

    # When `make demo` runs there against a database and broker vhost of its own
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WCE_", "VIRTUAL_ENV"))},
        "WCE_DATABASE_URL": demo_env.database_url,
        "WCE_AMQP_URL": demo_env.amqp_url,
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

    # And it showed the tenant's API key, the summary once, and how to go on exploring
    assert re.search(r"Its API key \(shown once\): \S+", result.stdout), output[-3000:]
    assert result.stdout.count("Campaign result") == 1
    assert f"Campaign {Path(match.group(1)).stem.removeprefix('campaign-')} —" not in result.stdout
    assert ".venv/bin/wce campaigns list" in result.stdout
    assert "make demo-clean" in result.stdout
    # And it ends with the web console's address and the key to sign in with
    # (make itself adds "make[1]: Leaving directory" when the tests run under make, as in CI)
    demo_lines = [line for line in result.stdout.strip().splitlines() if not line.startswith("make[")]
    last_lines = demo_lines[-2:]
    assert re.fullmatch(
        r"Web console \(after `make run`\): http://127\.0\.0\.1:8004/signin", last_lines[0]
    ), last_lines
    assert re.fullmatch(r"Sign in with the API key: wce_\S+", last_lines[1]), last_lines

    # And this run's service logs, at INFO, are in one folder of their own
    logs = re.search(r"Service logs of this run: (\S+)", result.stdout)
    assert logs, output[-3000:]
    log_files = list(Path(logs.group(1)).glob("*.log"))
    assert Path(logs.group(1)).parent == Path(match.group(1)).parent
    # the migration command, the simulator, segmenter, tracker, dispatcher, two senders and the console
    assert len(log_files) == 8
    assert all(path.stat().st_size > 0 for path in log_files), [p.name for p in log_files]

    # When `make demo-clean` runs
    demo_tenants = _demo_tenants(demo_env)
    assert len(demo_tenants) == 1
    assert _queues(demo_env, demo_tenants)
    cleaned = subprocess.run(
        ["make", "demo-clean"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )

    # Then the demo tenant, its queues and the output folder are gone
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert _demo_tenants(demo_env) == []
    assert not _queues(demo_env, demo_tenants)
    assert not (clone / "var" / "demo").exists()


def _demo_tenants(isolated_env: IsolatedEnvironment) -> list[str]:
    result = subprocess.run(
        ["psql", isolated_env.database_url, "-tAc", "SELECT id FROM tenants WHERE name LIKE '%(demo)'"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.split()


def _queues(isolated_env: IsolatedEnvironment, tenant_ids: list[str]) -> list[str]:
    """The demo tenant's queues (dispatch and parked) in the test's vhost, which other tests'
    tenants share."""
    result = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", isolated_env.name, "name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [
        name
        for name in result.stdout.split()
        if ".dispatch." in name and any(tenant_id in name for tenant_id in tenant_ids)
    ]
