"""Status ranking, replay keys and batch planning of status callbacks."""

from __future__ import annotations

import pytest

from services.tracker.status import (
    Callback,
    RecipientRow,
    advances,
    dedupe_key,
    parse_error_code,
    plan_callbacks,
    state_for_status,
)

TENANT = "7b0d5c1e-0000-4000-8000-000000000001"


def callback(status: str, *, sid: str = "SM1", at: float = 100.0, error: str | None = None) -> Callback:
    params = {"MessageSid": sid, "MessageStatus": status}
    if error:
        params["ErrorCode"] = error
    built = Callback.from_params(TENANT, params, at)
    assert built is not None
    return built


def row(state: str = "sent", *, recipient_id: int = 1) -> RecipientRow:
    return RecipientRow(
        id=recipient_id, tenant_id=TENANT, campaign_id="c1", phone_e164="+14155550123", state=state
    )


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("sent", "delivered", True),
        ("sent", "read", True),
        ("delivered", "read", True),
        ("read", "delivered", False),
        ("delivered", "sent", False),
        ("read", "sent", False),
        ("sent", "sent", False),
        ("sent", "failed_delivery", True),
        ("sent", "undelivered", True),
        ("delivered", "failed_delivery", False),
        ("read", "undelivered", False),
        ("failed_delivery", "read", False),
        ("undelivered", "delivered", False),
        ("failed", "delivered", False),
        ("cancelled", "read", False),
    ],
)
def test_a_state_only_moves_forward_in_the_partial_order(current: str, target: str, expected: bool) -> None:
    assert advances(current, target) is expected


def test_twilio_statuses_map_to_recipient_states_and_early_ones_mean_nothing() -> None:
    assert state_for_status("failed") == "failed_delivery"
    assert state_for_status("READ") == "read"
    assert state_for_status("undelivered") == "undelivered"
    for early in ("accepted", "queued", "sending", "scheduled", "canceled", "bogus"):
        assert state_for_status(early) is None


def test_the_idempotency_token_identifies_a_callback_when_present() -> None:
    assert dedupe_key("SM1", "delivered", "tok-1") == dedupe_key("SM2", "read", "tok-1")
    assert dedupe_key("SM1", "delivered", None) == dedupe_key("SM1", "Delivered", "")
    assert dedupe_key("SM1", "delivered", None) != dedupe_key("SM1", "read", None)


def test_error_codes_that_are_not_small_integers_are_ignored() -> None:
    assert parse_error_code(" 63014 ") == 63014
    assert parse_error_code("") is None
    assert parse_error_code("abc") is None
    assert parse_error_code("99999999999999") is None
    assert parse_error_code(None) is None


def test_a_callback_without_sid_or_status_is_not_a_callback() -> None:
    assert Callback.from_params(TENANT, {"MessageStatus": "sent"}, 1.0) is None
    assert Callback.from_params(TENANT, {"MessageSid": "SM1"}, 1.0) is None
    legacy = Callback.from_params(TENANT, {"SmsSid": "SM1", "SmsStatus": "Delivered"}, 1.0)
    assert legacy is not None and legacy.status == "delivered"


def test_read_before_delivered_and_sent_gives_one_transition_and_sets_delivered_time() -> None:
    # Given a sent recipient and callbacks arriving read first
    callbacks = [callback("read", at=30.0), callback("delivered", at=31.0), callback("sent", at=32.0)]

    # When they are planned
    plan = plan_callbacks(callbacks, [row("sent")], {(TENANT, "SM1"): 1})

    # Then one transition sent -> read, with delivered implied at the read time
    assert [(t.from_state, t.to_state) for t in plan.transitions] == [("sent", "read")]
    final = plan.rows[1]
    assert final.state == "read"
    assert final.read_at == 30.0
    assert final.delivered_at == 30.0
    assert plan.changed_rows() == [final]


def test_delivered_then_read_in_order_gives_two_transitions() -> None:
    plan = plan_callbacks(
        [callback("delivered", at=10.0), callback("read", at=20.0)], [row("sent")], {(TENANT, "SM1"): 1}
    )
    assert [(t.from_state, t.to_state) for t in plan.transitions] == [
        ("sent", "delivered"),
        ("delivered", "read"),
    ]
    assert plan.rows[1].delivered_at == 10.0


def test_a_failure_records_the_error_and_an_opt_out_code_suppresses_the_number() -> None:
    plan = plan_callbacks([callback("failed", error="63014")], [row("sent")], {(TENANT, "SM1"): 1})
    assert plan.rows[1].state == "failed_delivery"
    assert plan.rows[1].error_code == 63014
    assert plan.transitions[0].error_code == 63014
    assert [(s.phone_e164, s.reason) for s in plan.suppressions] == [("+14155550123", "Twilio error 63014")]


def test_a_failure_with_another_code_does_not_suppress() -> None:
    plan = plan_callbacks([callback("undelivered", error="30008")], [row("sent")], {(TENANT, "SM1"): 1})
    assert plan.rows[1].state == "undelivered"
    assert plan.suppressions == []


def test_unknown_sids_and_rows_the_sender_has_not_settled_become_orphans() -> None:
    unknown = callback("delivered", sid="SM404")
    early = callback("delivered", sid="SM2")
    plan = plan_callbacks([unknown, early], [row("sending", recipient_id=2)], {(TENANT, "SM2"): 2})
    assert plan.orphans == [unknown, early]
    assert plan.transitions == []
    assert plan.matched == []


def test_another_tenants_sid_does_not_match() -> None:
    other = Callback.from_params("another-tenant", {"MessageSid": "SM1", "MessageStatus": "read"}, 1.0)
    assert other is not None
    plan = plan_callbacks([other], [row("sent")], {(TENANT, "SM1"): 1})
    assert plan.orphans == [other]
