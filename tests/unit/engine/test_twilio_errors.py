"""The outcome classifier and the retry tier choice: every code of the reference table and every
transport case, as a table."""

from __future__ import annotations

import pytest

from shared.twilio_errors import OutcomeKind, classify, next_tier

A, T, P, U, AUTH = (
    OutcomeKind.ACCEPTED,
    OutcomeKind.TRANSIENT,
    OutcomeKind.PERMANENT,
    OutcomeKind.AMBIGUOUS,
    OutcomeKind.AUTH,
)

# (http status, Twilio code, expected kind, suppress the number?)
CODE_TABLE = [
    (401, 20003, AUTH, False),
    (404, 20404, P, False),
    (429, 20429, T, False),
    (500, 20500, U, False),
    (503, 20503, U, False),
    (400, 21211, P, False),
    (400, 21408, P, False),
    (400, 21610, P, True),
    (400, 21614, P, False),
    (400, 21617, P, False),
    (400, 21656, P, False),
    (400, 21703, P, False),
    (400, 30001, T, False),
    (400, 30002, P, False),
    (400, 30003, T, False),
    (400, 30004, P, False),
    (400, 30005, P, False),
    (400, 30006, P, False),
    (400, 30007, P, False),
    (400, 30008, T, False),
    (400, 63003, P, False),
    (400, 63005, P, False),
    (400, 63007, P, False),
    (400, 63013, P, False),
    (400, 63014, P, True),
    (400, 63016, P, False),
    (400, 63017, T, False),
    (400, 63018, T, False),
    (400, 63019, T, False),
    (400, 63021, P, False),
    (400, 63024, P, False),
    (400, 63025, P, False),
    (400, 63027, P, False),
    (400, 63030, P, False),
    (400, 63032, P, False),
    (400, 63038, T, False),
    (400, 63041, P, False),
    (400, 63042, P, False),
    (400, 63049, P, False),
    (400, 63051, P, False),
    (400, 60728, T, False),
    (400, 11200, P, False),
]


@pytest.mark.parametrize(
    ("http_status", "code", "kind", "suppress"), CODE_TABLE, ids=[str(c[1]) for c in CODE_TABLE]
)
def test_every_reference_code_has_its_verdict(
    http_status: int, code: int, kind: OutcomeKind, suppress: bool
) -> None:
    # Given a Twilio error response with this code / When it is classified
    outcome = classify(http_status=http_status, code=code, message="m")
    # Then the verdict matches the reference table, with the code and message kept
    assert outcome.kind is kind
    assert outcome.code == code
    assert outcome.suppress is suppress


TRANSPORT_TABLE = [
    # (http status, code, reached, expected kind, why)
    (201, None, True, A, "created"),
    (200, None, True, A, "ok"),
    (None, None, False, T, "connection refused before the request left"),
    (None, None, True, U, "read timeout or reset after the request left"),
    (429, None, True, T, "429 without a code is never processed"),
    (500, None, True, U, "5xx may have created the message"),
    (502, None, True, U, "bad gateway after sending"),
    (503, None, True, U, "unavailable after sending"),
    (401, None, True, AUTH, "401 without a code"),
    (400, None, True, P, "other 4xx without a code"),
    (400, 99999, True, P, "an unknown 4xx code"),
    (500, 63018, True, T, "a rate-limit code wins over the status"),
]


@pytest.mark.parametrize(
    ("http_status", "code", "reached", "kind", "why"),
    TRANSPORT_TABLE,
    ids=[row[4] for row in TRANSPORT_TABLE],
)
def test_transport_and_status_cases_are_classified(
    http_status: int | None, code: int | None, reached: bool, kind: OutcomeKind, why: str
) -> None:
    # Given an attempt that ended this way / When it is classified / Then
    assert classify(http_status=http_status, code=code, reached=reached).kind is kind, why


def test_retry_after_travels_with_a_transient_outcome() -> None:
    # Given a 429 carrying Retry-After / When classified
    outcome = classify(http_status=429, code=20429, retry_after_s=42.0)
    # Then the delay is kept for the tier choice
    assert outcome.kind is T and outcome.retry_after_s == 42.0


TIERS = [5, 30, 120, 600, 1800]


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 5),
        (2, None, 30),
        (3, None, 120),
        (4, None, 600),
        (5, None, 1800),
        (1, 4.0, 5),
        (1, 5.0, 5),
        (1, 6.0, 30),
        (2, 100.0, 120),
        (1, 5000.0, 1800),
        (3, 1.0, 120),
        (6, None, None),
        (7, 3.0, None),
    ],
)
def test_next_tier_escalates_and_honours_retry_after(
    attempt: int, retry_after: float | None, expected: int | None
) -> None:
    # Given attempts made so far and an optional Retry-After / When the next tier is chosen
    chosen = next_tier(attempt, retry_after, TIERS, max_attempts=6)
    # Then it is the escalating tier, at least Retry-After, or None at the cap
    assert chosen == expected


def test_attempts_beyond_the_tier_list_stay_on_the_last_tier() -> None:
    # Given more allowed attempts than tiers / When the 4th attempt failed
    # Then the longest tier is used again
    assert next_tier(4, None, [1, 2], max_attempts=10) == 2
