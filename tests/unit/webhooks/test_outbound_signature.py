"""The delivery signature and the receiver's verification, with the README's test vector."""

from __future__ import annotations

import pytest

from shared.webhook_signature import SignatureError, new_secret, signature_header, verify

# The test vector of README "Outbound webhooks": a receiver's implementation must produce it.
SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
TIMESTAMP = 1767225600
BODY = b'{"id":"evt_me_42","type":"recipient.delivered"}'
HEADER = "t=1767225600,v1=81e3ea04f6c0507da72e21924c7178fb0217d63572965a1acff9ac0e4fb92a96"


def test_the_documented_test_vector_is_what_deliveries_carry() -> None:
    assert signature_header(SECRET, TIMESTAMP, BODY) == HEADER


def test_a_signed_body_verifies_within_the_tolerance() -> None:
    assert verify(SECRET, HEADER, BODY, now=TIMESTAMP + 299) == TIMESTAMP


@pytest.mark.parametrize(
    ("secret", "header", "body", "now"),
    [
        (SECRET, HEADER, BODY + b" ", TIMESTAMP),  # the body was changed
        ("whsec_another", HEADER, BODY, TIMESTAMP),  # another endpoint's secret
        (SECRET, HEADER, BODY, TIMESTAMP + 301),  # replayed after the tolerance
        (SECRET, HEADER.replace("t=1767225600", "t=1767225700"), BODY, TIMESTAMP + 100),  # timestamp swapped
        (SECRET, "v1=81e3", BODY, TIMESTAMP),  # no timestamp
        (SECRET, "t=1767225600", BODY, TIMESTAMP),  # no signature
        (SECRET, "", BODY, TIMESTAMP),
    ],
)
def test_a_changed_body_secret_time_or_header_does_not_verify(
    secret: str, header: str, body: bytes, now: int
) -> None:
    with pytest.raises(SignatureError):
        verify(secret, header, body, now=now)


def test_one_matching_signature_among_several_is_enough() -> None:
    header = f"t={TIMESTAMP},v1=00ff,{HEADER.split(',')[1]}"
    assert verify(SECRET, header, BODY, now=TIMESTAMP) == TIMESTAMP


def test_secrets_are_long_random_and_recognisable() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and len(first) >= 40 and first != second
