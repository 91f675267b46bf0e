"""Rebuilding the URL Twilio signed, and reading the form the way the signature needs it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _reference(body: bytes) -> dict[str, str | list[str]]:
    """What the parser must return: the standard library's reading, grouped by name."""
    grouped: dict[str, str | list[str]] = {}
    for name, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        existing = grouped.get(name)
        if existing is None:
            grouped[name] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            grouped[name] = [existing, value]
    return grouped


def test_plus_and_percent_escapes_decode_as_the_standard_library_does() -> None:
    body = b"From=whatsapp%3A%2B14155238886&Body=a+b%20c%2bd&Caf%C3%A9=cr%c3%A8me&Path=%5C%25x"
    params = parse_form(body)
    assert params == {
        "From": "whatsapp:+14155238886",
        "Body": "a b c+d",
        "Café": "crème",
        "Path": "\\%x",
    }
    assert params == _reference(body)


def test_empty_values_names_without_equals_and_empty_fields_are_kept_or_skipped_like_parse_qsl() -> None:
    body = b"&Empty=&NoEquals&&=&=orphan&Eq=a=b&"
    assert parse_form(body) == {"Empty": "", "NoEquals": "", "": ["", "orphan"], "Eq": "a=b"}
    assert parse_form(body) == _reference(body)
    assert parse_form(b"") == {}


@pytest.mark.parametrize(
    "body",
    [
        b"Bad=%zz&Half=%4&End=%&Double=%%41&Mixed=%41%g1%42",
        b"Lone=%C3&Overlong=%C0%AF&Surrogate=%ED%A0%80&Max=%F4%90%80%80",
        b"Backslash=\\x41&Escaped=%5Cx41&Both=\\%41\\",
        b"Raw=caf\xc3\xa9&Invalid=\xff\xfe&Split=\xc3&After=%A9",
        b"Controls=%00%0A%0D%09&Space=+++&Plus=%2B%2b",
        b"Repeat=1&Repeat=&Repeat=%20&Other=x&Repeat=1",
    ],
)
def test_malformed_and_unusual_input_reads_exactly_as_the_standard_library_reads_it(body: bytes) -> None:
    assert parse_form(body) == _reference(body)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.text(), st.text()), max_size=8))
def test_any_urlencoded_form_round_trips(fields: list[tuple[str, str]]) -> None:
    # Given fields (names may repeat) encoded the way Twilio and httpx encode forms
    body = urlencode(fields).encode()

    # When parsed, then every value comes back, under its name, in order
    expected: dict[str, list[str]] = {}
    for name, value in fields:
        expected.setdefault(name, []).append(value)
    assert {name: [v] if isinstance(v, str) else v for name, v in parse_form(body).items()} == expected


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"a", b"Z", b"0", b"f", b"%", b"+", b"=", b"&", b"\\", b"x", b"\xc3", b"\xa9"]),
        max_size=24,
    )
)
def test_any_byte_soup_reads_as_the_standard_library_reads_it(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert parse_form(body) == _reference(body)
