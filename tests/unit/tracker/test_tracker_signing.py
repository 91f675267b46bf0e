"""Rebuilding the URL Twilio signed, and reading the form the way the signature needs it."""

from __future__ import annotations

from services.tracker.signing import parse_form, public_url, signature_holds, single_values
from shared.twilio_signature import compute_signature, validate_signature


def test_the_signed_url_is_the_public_base_with_the_raw_path_and_query() -> None:
    url = public_url("https://hooks.example.com/", b"/twilio/status/t1", b"a=1&b=%20")
    assert url == "https://hooks.example.com/twilio/status/t1?a=1&b=%20"
    assert public_url("https://hooks.example.com", b"/twilio/inbound/t1", b"") == (
        "https://hooks.example.com/twilio/inbound/t1"
    )


def test_a_public_base_with_a_path_prefix_is_kept() -> None:
    assert public_url("https://example.com/wce", b"/twilio/status/t1", b"") == (
        "https://example.com/wce/twilio/status/t1"
    )


def test_repeated_fields_keep_all_their_values_for_the_signature() -> None:
    params = parse_form(b"Digits=5678&Sid=CA123&Digits=1234&Digits=1234&SidAccount=AC123&Empty=")
    assert params == {"Digits": ["5678", "1234", "1234"], "Sid": "CA123", "SidAccount": "AC123", "Empty": ""}
    assert single_values(params)["Digits"] == "5678"


def test_a_form_signed_by_twilio_validates_after_parsing_and_rebuilding() -> None:
    # Given the signature Twilio computed for the public URL (proxy in front, default port)
    token = "12345"
    fields = {"MessageSid": "SM1", "MessageStatus": "delivered", "Body": "héllo wörld & more"}
    signature = compute_signature(token, "https://hooks.example.com/twilio/status/t1", fields)
    body = b"MessageSid=SM1&MessageStatus=delivered&Body=h%C3%A9llo+w%C3%B6rld+%26+more"

    # When the tracker rebuilds the URL and parses the body
    url = public_url("https://hooks.example.com", b"/twilio/status/t1", b"")
    params = parse_form(body)

    # Then the signature holds, also when Twilio signed the URL with the default port
    assert validate_signature(token, url, params, signature)
    with_port = compute_signature(token, "https://hooks.example.com:443/twilio/status/t1", fields)
    assert validate_signature(token, url, params, with_port)
    assert not validate_signature(token, url, {**params, "MessageStatus": "read"}, signature)


def test_the_fast_check_agrees_with_twilios_on_exact_port_variant_and_forged_signatures() -> None:
    token = "12345"
    params = parse_form(b"MessageSid=SM1&MessageStatus=read&Digits=1&Digits=2")
    for signed, checked in [
        ("https://h.example.com/twilio/status/t1", "https://h.example.com/twilio/status/t1"),
        ("https://h.example.com:443/twilio/status/t1", "https://h.example.com/twilio/status/t1"),
        ("http://h.example.com/twilio/status/t1", "http://h.example.com:8001/twilio/status/t1"),
    ]:
        signature = compute_signature(token, signed, params)
        assert signature_holds(token, checked, params, signature) == validate_signature(
            token, checked, params, signature
        )
    assert not signature_holds(token, "https://h.example.com/x", params, "bm90IGl0")
    assert not signature_holds(token, "https://h.example.com/x", params, "ünïcode")
