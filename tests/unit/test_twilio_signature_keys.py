"""Signatures from cached keyed SHA-1 states equal the standard library's HMAC for any token."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from shared.twilio_signature import compute_signature, sign_string, string_to_sign

URL = "https://hooks.example.com/twilio/status?tenant=t1"
PARAMS = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "Body": "Olá 😀"}


def _stdlib(token: str, text: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


@pytest.mark.parametrize(
    "token",
    ["", "12345", "a" * 63, "b" * 64, "c" * 65, "é" * 40, "x" * 500],
    ids=["empty", "short", "block-1", "block", "block+1", "non-ascii", "long"],
)
def test_signature_matches_stdlib_hmac_whatever_the_token_length(token: str) -> None:
    # Given any auth token, including ones longer than a SHA-1 block
    text = string_to_sign(URL, PARAMS)

    # When the same text is signed twice (the second time from the cached key states)
    first = sign_string(token, text)
    second = compute_signature(token, URL, PARAMS)

    # Then both equal the standard library's HMAC-SHA1
    assert first == second == _stdlib(token, text)


def test_reusing_a_token_does_not_carry_state_between_messages() -> None:
    assert sign_string("tok", "one") == _stdlib("tok", "one")
    assert sign_string("tok", "two") == _stdlib("tok", "two")
    assert sign_string("tok", "one") == _stdlib("tok", "one")
