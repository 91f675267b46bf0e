"""The simulator's form decoding agrees with urllib on every input."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, urlencode

from tools.twilio_sim.forms import decode_form

_ALPHABET = "abcXYZ019 +-_.~:/=&?%#;,'\"\\\t\né€中😀"


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(low, high)))


def _urllib_decode(body: bytes) -> tuple[dict[str, str], int]:
    pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return dict(pairs), sum(1 for name, _ in pairs if name == "MediaUrl")


def test_a_create_request_decodes_to_its_fields() -> None:
    # Given a create request as the sender encodes it
    body = urlencode(
        {
            "To": "whatsapp:+15551234567",
            "From": "whatsapp:+14155550100",
            "Body": "Olá Ana, 50% off: reply YES & win!",
            "StatusCallback": "https://hooks.example.com/twilio/status?tenant=t1",
        }
    ).encode()

    # When it is decoded
    form, num_media = decode_form(body)

    # Then every field comes back verbatim
    assert form == {
        "To": "whatsapp:+15551234567",
        "From": "whatsapp:+14155550100",
        "Body": "Olá Ana, 50% off: reply YES & win!",
        "StatusCallback": "https://hooks.example.com/twilio/status?tenant=t1",
    }
    assert num_media == 0


def test_repeated_media_urls_are_counted_and_the_last_one_kept() -> None:
    body = b"To=x&MediaUrl=https%3A%2F%2Fa%2F1&MediaUrl=https%3A%2F%2Fa%2F2&Body="

    form, num_media = decode_form(body)

    assert num_media == 2
    assert form == {"To": "x", "MediaUrl": "https://a/2", "Body": ""}


def test_decoding_agrees_with_parse_qsl_on_random_and_malformed_bodies() -> None:
    rng = random.Random(20260601)
    raw_pieces = ["%", "%2", "%zz", "%C3", "%A9", "%C3%A9", "%E2%82%AC", "+", "=", "&", "&&", "MediaUrl="]
    for _ in range(3000):
        if rng.random() < 0.5:
            pairs = [(_text(rng, 0, 8), _text(rng, 0, 20)) for _ in range(rng.randint(0, 6))]
            pairs += [("MediaUrl", _text(rng, 0, 5)) for _ in range(rng.randint(0, 2))]
            rng.shuffle(pairs)
            body = urlencode(pairs).encode()
        else:
            text = "".join(rng.choice(raw_pieces + list(_ALPHABET)) for _ in range(rng.randint(0, 40)))
            body = text.encode("utf-8")
            if rng.random() < 0.2:
                body += bytes([rng.randint(0x80, 0xFF)])
        assert decode_form(body) == _urllib_decode(body), body
