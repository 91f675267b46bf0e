"""The sender's pure decisions: transitions after an attempt or a lookup, the campaign gate and
its error window, and which listed Twilio message settles an unknown row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.sender.gate import CampaignGate, ErrorWindow
from services.sender.maintenance import pick_message
from services.sender.outcomes import (
    EMPTY_BODY_CODE,
    Skip,
    after_attempt,
    after_lookup,
    late_create_bound_s,
    not_found_believed,
    refused_locally,
    skipped,
)
from shared.templating import BODY_TOO_LONG_CODE, MAX_BODY_CHARS, RenderedMessage
from shared.twilio_client import ListedMessage
from shared.twilio_errors import classify

TIERS = [5, 30, 120]


def test_an_accepted_attempt_is_sent() -> None:
    assert (
        after_attempt(classify(http_status=201), attempts=1, tiers=TIERS, max_attempts=4).to_state == "sent"
    )


def test_a_429_waits_without_counting_the_attempt() -> None:
    # Given a 429 on the second attempt
    transition = after_attempt(classify(http_status=429, code=20429), attempts=2, tiers=TIERS, max_attempts=4)
    # Then the row waits 30 s, keeps the error, and the attempt does not count
    assert (transition.to_state, transition.tier_s, transition.error_code) == ("retry_wait", 30, 20429)
    assert transition.uncount and not transition.is_error


def test_a_429_at_the_attempt_cap_still_retries_and_follows_retry_after() -> None:
    # Given a 429 asking to wait 100 s on the last allowed attempt
    transition = after_attempt(
        classify(http_status=429, code=63018, retry_after_s=100), attempts=4, tiers=TIERS, max_attempts=4
    )
    # Then Twilio never processed it: the row waits in the first tier at least that long
    assert (transition.to_state, transition.tier_s, transition.uncount) == ("retry_wait", 120, True)


def test_retries_that_did_not_count_still_move_up_the_tiers() -> None:
    # Given a recipient on its first counted attempt after two uncounted retries
    first = after_attempt(classify(http_status=429, code=20429), attempts=1, tiers=TIERS, max_attempts=4)
    third = after_attempt(
        classify(http_status=429, code=20429), attempts=1, deferrals=2, tiers=TIERS, max_attempts=4
    )
    # Then its third 429 in a row waits longer than its first
    assert (first.tier_s, third.tier_s) == (5, 120)


def test_a_paced_tenant_refused_for_rate_goes_back_for_a_slot_at_its_backed_off_rate() -> None:
    # Given a tenant with a rate whose create was refused with 63018
    transition = after_attempt(
        classify(http_status=429, code=63018, retry_after_s=2),
        attempts=3,
        tiers=TIERS,
        max_attempts=4,
        paced=True,
    )
    # Then it is handed back to the dispatcher, uncounted, keeping the code and the Retry-After
    assert (transition.to_state, transition.redispatch, transition.uncount) == ("queued", True, True)
    assert (transition.error_code, transition.retry_after_s, transition.tier_s) == (63018, 2, None)
    assert transition.requested


def test_a_request_that_never_left_does_not_count_as_an_attempt() -> None:
    transition = after_attempt(
        classify(http_status=None, reached=False), attempts=4, tiers=TIERS, max_attempts=4
    )
    assert (transition.to_state, transition.uncount) == ("retry_wait", True)


def test_a_counted_transient_error_at_the_cap_fails_with_its_last_error() -> None:
    # Given a queue overflow (Twilio processed the create) on the last allowed attempt
    transition = after_attempt(
        classify(http_status=400, code=30001, message="queue overflow"),
        attempts=4,
        tiers=TIERS,
        max_attempts=4,
    )
    # Then the recipient fails and keeps Twilio's code and message
    assert transition.to_state == "failed" and transition.is_error
    assert transition.error_code == 30001
    assert "queue overflow" in (transition.error_message or "")


def test_a_permanent_error_fails_at_once_and_an_opt_out_suppresses() -> None:
    stop = after_attempt(
        classify(http_status=400, code=21610, message="unsubscribed"), attempts=1, tiers=TIERS, max_attempts=4
    )
    bad = after_attempt(classify(http_status=400, code=21211), attempts=1, tiers=TIERS, max_attempts=4)
    assert (stop.to_state, stop.suppress) == ("failed", True)
    assert (bad.to_state, bad.suppress) == ("failed", False)


def test_an_ambiguous_answer_makes_the_row_unknown() -> None:
    transition = after_attempt(
        classify(http_status=None, reached=True), attempts=1, tiers=TIERS, max_attempts=4
    )
    assert transition.to_state == "unknown"


def test_an_auth_error_requeues_without_counting_the_attempt() -> None:
    transition = after_attempt(classify(http_status=401, code=20003), attempts=3, tiers=TIERS, max_attempts=4)
    assert (transition.to_state, transition.uncount, transition.auth_failure) == ("queued", True, True)
    assert not transition.is_error


def test_a_lookup_that_finds_the_message_settles_it_as_sent() -> None:
    for believed in (False, True):
        found = after_lookup(True, believed=believed, attempts=1, tiers=TIERS)
        assert found is not None and found.to_state == "sent"


def test_an_empty_lookup_that_is_not_believed_looks_again_later() -> None:
    assert after_lookup(False, believed=False, attempts=1, tiers=TIERS) is None


def test_a_believed_empty_lookup_retries_uncounted_and_keeps_the_last_twilio_error() -> None:
    # Given an attempt answered 20500 whose message a believed lookup did not find, at the attempt cap
    retry = after_lookup(
        False, believed=True, attempts=4, tiers=TIERS, last_code=20500, last_message="Internal Server Error"
    )
    # Then Twilio never created it: the row retries, the attempt does not count, the code stays
    assert retry is not None
    assert (retry.to_state, retry.tier_s, retry.uncount, retry.error_code) == ("retry_wait", 120, True, 20500)
    assert "Internal Server Error" in (retry.error_message or "")


WRITTEN = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
# The engine's defaults: a 10 s Twilio timeout and a 30 s margin.
BOUND_S = late_create_bound_s(10.0, 30.0)


def believed_after(seconds: float, *, lookups: int = 1) -> bool:
    """Whether an empty look begun ``seconds`` after the create's latest possible write is believed."""
    return not_found_believed(
        lookups=lookups,
        looked_at=WRITTEN + timedelta(seconds=seconds),
        latest_write_at=WRITTEN,
        bound_s=BOUND_S,
    )


def test_the_late_create_bound_is_the_twilio_timeout_plus_the_margin() -> None:
    assert BOUND_S == 40.0
    assert late_create_bound_s(4.0, 2.0) == 6.0


def test_not_found_is_believed_only_once_the_write_is_older_than_the_bound() -> None:
    # Given a second empty look
    # Then it is not believed while the create's write may still be processed, nor exactly at the
    # bound, and it is believed the moment the write is older than the bound
    assert not believed_after(0)
    assert not believed_after(BOUND_S - 0.001)
    assert not believed_after(BOUND_S)
    assert believed_after(BOUND_S + 0.000001)
    assert believed_after(3600)


def test_a_first_empty_look_is_never_believed_however_old_the_write() -> None:
    assert not believed_after(BOUND_S + 1, lookups=0)
    assert not believed_after(86_400, lookups=0)
    # And any later look past the bound is
    assert believed_after(BOUND_S + 1, lookups=5)


def test_many_empty_looks_within_the_bound_are_not_believed() -> None:
    # Given a Twilio that answered "not found" to many quick looks (the starved-server case: the
    # looks are answered before the create queued on another connection)
    # Then the number of looks changes nothing until the write is older than the bound
    assert not believed_after(BOUND_S - 1, lookups=50)


def test_a_latest_write_in_the_looks_future_is_not_believed() -> None:
    # Given a lease-expired row whose bound is the lease's end, later than the look (clock skew)
    assert not believed_after(-5)


def test_a_body_twilio_would_refuse_fails_locally_without_weighing_on_the_error_rate() -> None:
    empty = refused_locally(RenderedMessage(body="  "))
    long = refused_locally(RenderedMessage(body="x" * (MAX_BODY_CHARS + 1)))
    assert empty is not None and (empty.to_state, empty.error_code) == ("failed", EMPTY_BODY_CODE)
    assert long is not None and (long.to_state, long.error_code) == ("failed", BODY_TOO_LONG_CODE)
    assert not empty.is_error and not long.is_error
    assert refused_locally(RenderedMessage(body="Hi Ann")) is None
    assert refused_locally(RenderedMessage(content_sid="HX" + "0" * 32, content_variables={})) is None


def test_skipped_messages_go_back_uncounted_and_only_late_ones_to_the_dispatcher() -> None:
    late, paused = skipped(Skip.LATE), skipped(Skip.PAUSED)
    assert (late.to_state, late.uncount, late.redispatch) == ("queued", True, True)
    assert (paused.to_state, paused.uncount, paused.redispatch) == ("queued", True, False)


def test_the_error_window_trips_at_the_threshold_after_the_minimum() -> None:
    # Given a window of 10 tripping at 50% after 4 attempts
    window = ErrorWindow(10, 0.5, 4)
    for is_error in (True, True, True):
        window.add(is_error)
    # Then three errors are not enough attempts yet; a fourth is
    assert not window.tripped()
    window.add(False)
    assert window.tripped()
    # And old outcomes slide out of the window
    for _ in range(10):
        window.add(False)
    assert window.rate == 0.0 and not window.tripped()


def test_a_local_auto_pause_holds_until_the_pause_is_seen_applied() -> None:
    gate = CampaignGate(window=10, threshold=0.5, min_attempts=2, hold_s=30)
    campaign = uuid.uuid4()
    # Given a campaign auto-paused here
    assert gate.auto_pause(campaign, now=0.0)
    assert not gate.auto_pause(campaign, now=1.0)
    # When the poll still reads "running" / Then it stays blocked
    gate.observe(campaign, "running")
    assert gate.blocked(campaign)
    # When the pause is seen and later the campaign resumes / Then it may send again
    gate.observe(campaign, "paused")
    assert gate.blocked(campaign)
    gate.observe(campaign, "running")
    assert not gate.blocked(campaign)


def test_a_local_pause_never_applied_lapses() -> None:
    gate = CampaignGate(window=10, threshold=0.5, min_attempts=2, hold_s=30)
    campaign = uuid.uuid4()
    gate.auto_pause(campaign, now=0.0)
    gate.expire(now=31.0)
    assert not gate.blocked(campaign)


def test_resuming_starts_a_fresh_error_window() -> None:
    gate = CampaignGate(window=4, threshold=0.5, min_attempts=2)
    campaign = uuid.uuid4()
    gate.observe(campaign, "running")
    assert gate.record(campaign, [True, True])
    gate.observe(campaign, "paused")
    gate.observe(campaign, "running")
    assert not gate.record(campaign, [True, False, False])


def _message(sid: str, created: datetime | None) -> ListedMessage:
    return ListedMessage(
        sid=sid, to="whatsapp:+1", from_="whatsapp:+2", status="sent", date_created=created, date_sent=None
    )


def test_the_reconciler_takes_the_earliest_unclaimed_message_after_the_claim() -> None:
    claim = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    messages = [
        _message("SMold", claim - timedelta(minutes=5)),
        _message("SMtaken", claim + timedelta(seconds=1)),
        _message("SMlater", claim + timedelta(seconds=3)),
        _message("SMours", claim + timedelta(seconds=2)),
        _message("SMnodate", None),
    ]
    assert pick_message(messages, claim, taken={"SMtaken"}).sid == "SMours"  # type: ignore[union-attr]
    assert pick_message(messages[:1], claim, taken=set()) is None


def test_a_campaign_paused_for_credits_lets_its_claimed_messages_go() -> None:
    # Given campaigns paused by a user and for lack of credits
    gate = CampaignGate(window=10, threshold=0.5, min_attempts=2)
    by_user, by_credits = uuid.uuid4(), uuid.uuid4()
    gate.observe(by_user, "paused", "paused")
    gate.observe(by_credits, "paused", "insufficient_credits")
    # Then only the user's pause stops messages already claimed (they hold their credits)
    assert gate.blocked(by_user)
    assert not gate.blocked(by_credits)
    gate.observe(by_credits, "cancelled")
    assert gate.blocked(by_credits)


def test_a_spam_refusal_sends_the_row_back_to_wait_unattempted_and_holds_the_tenant() -> None:
    # Given Meta refused the sender for spam on the last allowed attempt
    transition = after_attempt(
        classify(http_status=400, code=131048, message="Spam rate limit hit"),
        attempts=4,
        tiers=TIERS,
        max_attempts=4,
    )
    # Then the row waits for the hold to end, the attempt does not count, and the tenant is held
    assert (transition.to_state, transition.uncount, transition.hold_tenant) == ("queued", True, True)
    assert transition.error_code == 131048 and not transition.is_error and not transition.redispatch


def test_a_pair_rate_refusal_waits_at_least_the_pair_wait_without_counting_the_attempt() -> None:
    # Given too many messages to one number lately, at the attempt cap, with a 60 s pair wait
    transition = after_attempt(
        classify(http_status=400, code=131056), attempts=4, tiers=TIERS, max_attempts=4, pair_retry_s=60
    )
    # Then the number waits in the first tier of at least 60 s and the attempt does not count
    assert (transition.to_state, transition.tier_s, transition.uncount) == ("retry_wait", 120, True)
    assert transition.error_code == 131056 and not transition.hold_tenant and not transition.is_error
