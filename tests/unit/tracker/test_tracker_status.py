"""Status ranking, replay keys and batch planning of status callbacks."""

from __future__ import annotations

import pytest

from services.tracker.status import (
    Callback,
    RecipientRow,
    RefusalWaits,
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


WAITS = RefusalWaits(pair_rate_s=60.0, spam_hold_s=900.0)


def test_a_pair_rate_refusal_in_a_callback_sends_the_recipient_back_to_wait_without_an_attempt() -> None:
    # Given a sent recipient whose message Meta refused afterwards for the pair rate
    refused = callback("failed", at=100.0, error="131056")

    # When the callback is planned
    plan = plan_callbacks([refused], [row("sent")], {(TENANT, "SM1"): 1}, WAITS)

    # Then the recipient waits the pair-rate tier, its attempt given back, the refusal its last
    # error, and its history says why
    waiting = plan.rows[1]
    assert (waiting.state, waiting.error_code) == ("retry_wait", 131056)
    assert (waiting.attempts_change, waiting.next_attempt_at) == (-1, 160.0)
    assert plan.deferred == [waiting]
    [move] = plan.transitions
    assert (move.from_state, move.to_state, move.error_code) == ("sent", "retry_wait", 131056)
    assert move.detail is not None and "not counted as an attempt" in move.detail
    assert plan.suppressions == [] and plan.orphans == []


def test_a_spam_refusal_in_a_callback_waits_the_spam_hold() -> None:
    plan = plan_callbacks(
        [callback("undelivered", at=10.0, error="131048")], [row("sent")], {(TENANT, "SM1"): 1}, WAITS
    )
    assert (plan.rows[1].state, plan.rows[1].next_attempt_at) == ("retry_wait", 910.0)
    assert "spam" in (plan.transitions[0].detail or "")


def test_replays_and_late_statuses_of_a_refused_message_change_nothing_more() -> None:
    # Given a recipient sent back to wait by a refusal (an earlier batch)
    waiting = row("sent")._replace(state="retry_wait", error_code=131056)

    # When a duplicate of the refusal (a fresh idempotency token) and a late "sent" arrive
    plan = plan_callbacks(
        [callback("failed", error="131056"), callback("sent")], [waiting], {(TENANT, "SM1"): 1}, WAITS
    )

    # Then nothing moves, no attempt is given back twice, and nothing is kept as an orphan
    assert plan.transitions == [] and plan.deferred == [] and plan.orphans == []
    assert plan.rows[1].attempts_change == 0


def test_a_delivery_of_the_refused_message_still_wins_and_calls_the_resend_off() -> None:
    # Given a recipient waiting to be sent again after a refusal
    waiting = row("sent")._replace(state="retry_wait", error_code=131056)

    # When the refused message is reported delivered after all
    plan = plan_callbacks([callback("delivered", at=50.0)], [waiting], {(TENANT, "SM1"): 1}, WAITS)

    # Then the recipient is delivered, takes its attempt back, and is no longer due
    final = plan.rows[1]
    assert (final.state, final.delivered_at, final.attempts_change, final.next_attempt_at) == (
        "delivered",
        50.0,
        1,
        None,
    )
    assert [(t.from_state, t.to_state) for t in plan.transitions] == [("retry_wait", "delivered")]
    assert plan.deferred == []


def test_a_refusal_and_a_delivery_out_of_order_in_one_batch_end_delivered_with_the_attempt_counted() -> None:
    plan = plan_callbacks(
        [callback("failed", at=10.0, error="131056"), callback("delivered", at=11.0)],
        [row("sent")],
        {(TENANT, "SM1"): 1},
        WAITS,
    )
    final = plan.rows[1]
    assert (final.state, final.attempts_change, final.next_attempt_at) == ("delivered", 0, None)
    assert plan.deferred == []


def test_a_refusal_after_delivery_or_of_a_cancelled_campaign_is_not_sent_again() -> None:
    refusal = callback("failed", error="131056")
    delivered = plan_callbacks([refusal], [row("delivered")], {(TENANT, "SM1"): 1}, WAITS)
    assert delivered.transitions == [] and delivered.rows[1].state == "delivered"
    cancelled = plan_callbacks(
        [refusal], [row("sent")._replace(campaign_state="cancelled")], {(TENANT, "SM1"): 1}, WAITS
    )
    assert cancelled.rows[1].state == "failed_delivery" and cancelled.deferred == []


def test_other_failures_still_fail_the_recipient() -> None:
    plan = plan_callbacks([callback("failed", error="63016")], [row("sent")], {(TENANT, "SM1"): 1}, WAITS)
    assert plan.rows[1].state == "failed_delivery" and plan.deferred == []
