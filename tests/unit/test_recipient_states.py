"""The recipient states shared by the services are the ones the schema allows, and their subsets
add up."""

from __future__ import annotations

import re
from pathlib import Path

from shared import outbound_events
from shared.recipient_states import OPEN_RECIPIENT_STATES, RECIPIENT_STATES, TERMINAL_RECIPIENT_STATES

ROOT = Path(__file__).resolve().parents[2]
# The check in the recipients' CREATE TABLE, or a later ADD CONSTRAINT replacing it.
STATE_CHECK = re.compile(
    r"(?:CREATE TABLE recipients \((?:(?!\);).)*?|recipients_state_check\s+)CHECK \(state IN \(([^)]*)\)",
    re.DOTALL,
)


def test_the_recipient_states_are_the_ones_the_schema_allows_each_once() -> None:
    # The states the last migration that defines the recipients' state check allows.
    checks = [
        found
        for path in sorted((ROOT / "shared/migrations").glob("*.sql"))
        for found in STATE_CHECK.findall(path.read_text())
    ]
    assert checks
    assert sorted(RECIPIENT_STATES) == sorted(re.findall(r"'(\w+)'", checks[-1]))
    assert len(set(RECIPIENT_STATES)) == len(RECIPIENT_STATES)


def test_every_recipient_state_is_either_open_or_terminal() -> None:
    assert OPEN_RECIPIENT_STATES | TERMINAL_RECIPIENT_STATES == set(RECIPIENT_STATES)
    assert not OPEN_RECIPIENT_STATES & TERMINAL_RECIPIENT_STATES
    assert {"sent", "read", "failed", "cancelled"} <= TERMINAL_RECIPIENT_STATES


def test_the_states_outbound_webhooks_announce_are_recipient_states_the_send_path_has_settled() -> None:
    assert set(outbound_events.RECIPIENT_STATES) <= TERMINAL_RECIPIENT_STATES
