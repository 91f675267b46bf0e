"""The CLI's reference lists stay complete, and its rate follows the last seconds, not the average."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from shared.recipient_states import RECIPIENT_STATES
from shared.templating import SHORTCODES
from wce_cli import reference
from wce_cli.app import parse_days
from wce_cli.rate import RecentRate, eta_seconds
from wce_cli.render import describe

ROOT = Path(__file__).resolve().parents[2]
WCE = str(Path(sys.executable).parent / "wce")


def test_every_recipient_state_is_explained() -> None:
    assert list(reference.RECIPIENT_STATES) == list(RECIPIENT_STATES)


STATE_CHECK = (
    r"(?:state\s+text NOT NULL DEFAULT 'draft'\s+|campaigns_state_check\s+)"
    r"CHECK \(state IN \(([^)]*)\)"
)


def test_every_campaign_state_of_the_schema_is_explained() -> None:
    # The states the last migration that defines the campaigns' state check allows.
    checks = [
        found
        for path in sorted((ROOT / "shared/migrations").glob("*.sql"))
        for found in re.findall(STATE_CHECK, path.read_text())
    ]
    assert checks
    assert set(reference.CAMPAIGN_STATES) == set(re.findall(r"'(\w+)'", checks[-1]))


def test_every_shortcode_templates_accept_is_listed_once() -> None:
    listed = [row[0].strip("{}") for row in reference.shortcode_rows()]
    assert sorted(listed) == sorted(SHORTCODES)


def test_the_rate_is_measured_over_the_recent_window_not_since_the_start() -> None:
    rate = RecentRate(window_s=10.0)
    # A slow start (10/s for 20 s), then 250/s for 15 s
    done = 0
    for second in range(20):
        done += 10
        rate.observe(float(second), done)
    for second in range(20, 35):
        done += 250
        rate.observe(float(second), done)
    assert rate.per_second() == 250.0
    assert eta_seconds(5_000, rate.per_second()) == 20.0


def test_the_rate_is_unknown_until_enough_time_was_seen() -> None:
    rate = RecentRate(min_span_s=1.5)
    rate.observe(0.0, 0)
    assert rate.per_second() is None
    rate.observe(1.0, 100)
    assert rate.per_second() is None
    rate.observe(2.0, 200)
    assert rate.per_second() == 100.0
    assert eta_seconds(0, 100.0) is None


def test_the_bar_shows_the_measured_rate_and_eta() -> None:
    update = {"state": "running", "total": 100, "done": 40, "rate_per_s": 6.0, "eta_s": 785.0}
    fields = describe(update, rate=243.0, eta_s=65.0)
    assert fields["rate"] == "243.0/s"
    assert fields["eta"] == "ETA 1:05"


def test_the_bar_says_what_a_held_campaign_waits_for_and_when_it_opens() -> None:
    update = {
        "state": "running",
        "total": 100,
        "done": 40,
        "rate_per_s": 0.0,
        "eta_s": 50_400.0,
        "waiting": "waiting for the sending window (opens 2026-12-10T14:00:00+00:00)",
    }
    fields = describe(update)
    assert "waiting for the sending window (opens 2026-12-10T14:00:00+00:00)" in fields["description"]
    assert fields["eta"] == "ETA 14:00:00"


def test_window_days_are_read_as_ranges_and_lists_in_week_order() -> None:
    assert parse_days("mon-sat") == ["mon", "tue", "wed", "thu", "fri", "sat"]
    assert parse_days("sat,mon-wed") == ["mon", "tue", "wed", "sat"]
    for bad in ("fri-mon", "funday", "mon-"):
        with pytest.raises(typer.BadParameter):
            parse_days(bad)


def test_shortcodes_and_statuses_are_printed_by_the_installed_command() -> None:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "TERM": "dumb"}
    shortcodes = subprocess.run([WCE, "shortcodes"], capture_output=True, text=True, env=env, timeout=60)
    statuses = subprocess.run([WCE, "statuses"], capture_output=True, text=True, env=env, timeout=60)
    assert shortcodes.returncode == 0, shortcodes.stderr
    assert "{customer_first_name}" in shortcodes.stdout and '"there"' in shortcodes.stdout
    assert statuses.returncode == 0, statuses.stderr
    assert "retry_wait" in statuses.stdout and "snapshotting" in statuses.stdout


def test_a_messaging_limit_that_is_no_tier_is_refused_before_anything_is_asked() -> None:
    # Given an operator token and a limit WhatsApp has no tier for (no server is listening)
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "TERM": "dumb", "WCE_OPERATOR_TOKEN": "x" * 40}
    command = [WCE, "tenants", "set-messaging-limit", "00000000-0000-0000-0000-000000000000", "300"]
    command += ["--api-url", "http://127.0.0.1:9"]

    # When the command runs
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    # Then it exits 2 with one line naming the tiers
    assert result.returncode == 2, result.stderr
    assert "limit: must be one of 250, 1000, 2000, 10000, 100000, unlimited" in result.stderr
