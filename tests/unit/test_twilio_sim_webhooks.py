"""Status callbacks written out directly agree with the generic form and signature code."""

from __future__ import annotations

import itertools
from urllib.parse import urlencode

import pytest

from shared.twilio_signature import compute_signature, validate_signature
from tools.twilio_sim.errors import async_text
from tools.twilio_sim.messages import Message
from tools.twilio_sim.webhooks import status_request

TOKEN = "f3c1e1a2b4d5c6e7f8091a2b3c4d5e6f"
INSTALL = "XE" + "ab12" * 8
EVENTS = {"delivered": "DELIVERED", "read": "READ", "undelivered": "UNDELIVERED"}


def _expected_fields(message: Message, status: str, error_code: int | None) -> dict[str, str]:
    """The callback's fields in wire order, spelled out as a dict."""
    fields = {
        "AccountSid": message.account_sid,
        "ApiVersion": "2010-04-01",
        "From": message.from_ or "",
        "MessageSid": message.sid,
        "MessageStatus": status,
        "SmsSid": message.sid,
        "SmsStatus": status,
        "To": message.to,
    }
    if message.to.startswith("whatsapp:"):
        fields["ChannelPrefix"] = "whatsapp"
        fields["ChannelInstallSid"] = INSTALL
        fields["ChannelToAddress"] = message.to.removeprefix("whatsapp:")[:-4] + "XXXX"
        fields["StructuredMessage"] = "false"
        if status in EVENTS:
            fields["EventType"] = EVENTS[status]
    if message.messaging_service_sid is not None:
        fields["MessagingServiceSid"] = message.messaging_service_sid
    if error_code is not None:
        fields["ErrorCode"] = str(error_code)
        fields["ChannelStatusMessage"] = async_text(error_code)
    return fields


def _message(to: str, from_: str | None, service: str | None) -> Message:
    return Message(
        sid="SM" + "0123456789abcdef" * 2,
        seq=1,
        account_sid="AC" + "fedcba9876543210" * 2,
        to=to,
        from_=from_,
        body="hi",
        status="queued",
        created=0.0,
        messaging_service_sid=service,
        status_callback="unused",
    )


@pytest.mark.parametrize(
    ("to", "from_", "service", "status", "error_code", "url"),
    list(
        itertools.product(
            ["whatsapp:+15551234567", "+15551234567"],
            ["whatsapp:+14155550100", None],
            [None, "MG" + "1" * 32],
            ["sent", "delivered", "read", "undelivered", "failed"],
            [None, 63016, 30008],
            ["https://hooks.example.com/twilio/status?tenant=t1&x=a+b", "http://h:8080/s#rc=2&ct=500"],
        )
    ),
)
def test_a_status_callback_matches_the_generic_encoding_and_signature(
    to: str, from_: str | None, service: str | None, status: str, error_code: int | None, url: str
) -> None:
    # Given a message in any shape a status callback can take
    message = _message(to, from_, service)

    # When its callback is built
    request = status_request(TOKEN, url, message, status, error_code, INSTALL)

    # Then the form is the fields urlencoded in wire order, signed over the URL without fragment
    fields = _expected_fields(message, status, error_code)
    signed_url = url.partition("#")[0]
    headers = dict(request.headers)
    assert request.url == signed_url
    assert request.body == urlencode(fields).encode()
    assert headers["X-Twilio-Signature"] == compute_signature(TOKEN, signed_url, fields)
    assert validate_signature(TOKEN, signed_url, fields, headers["X-Twilio-Signature"])
    assert headers["I-Twilio-Idempotency-Token"] == f"{message.sid}-{status}"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["User-Agent"] == "TwilioProxy/1.1"


def test_connection_overrides_in_the_callback_fragment_ask_for_retries_as_twilio_reads_them() -> None:
    from tools.twilio_sim.callbacks import connection_overrides, should_retry

    assert connection_overrides("https://t.example/twilio/status/x") == (0, frozenset())
    assert connection_overrides("https://t.example/s#rc=3&rp=all") == (3, frozenset({"all"}))
    assert connection_overrides("https://t.example/s#rc=9&rp=5xx,ct") == (5, frozenset({"5xx", "ct"}))
    assert connection_overrides("https://t.example/s#rc=2") == (2, frozenset({"ct"}))
    # an invalid policy (Twilio: 11243) or count asks for nothing
    assert connection_overrides("https://t.example/s#rc=2&rp=sometimes") == (0, frozenset())
    assert connection_overrides("https://t.example/s#rc=x") == (0, frozenset())
    assert should_retry(frozenset({"all"}), 503, False) and should_retry(frozenset({"all"}), None, True)
    assert not should_retry(frozenset({"all"}), 204, False)
    assert should_retry(frozenset({"5xx"}), 502, False) and not should_retry(frozenset({"5xx"}), 403, False)
    assert should_retry(frozenset({"ct"}), None, False) and not should_retry(frozenset({"ct"}), None, True)
    assert should_retry(frozenset({"rt"}), None, True)


def test_the_engine_asks_twilio_to_retry_status_callbacks_outside_the_signed_url() -> None:
    from shared.webhooks import status_callback_request_url, status_callback_url

    url = status_callback_request_url("https://hooks.example.com/", "t1")
    assert url == "https://hooks.example.com/twilio/status/t1#rc=5&rp=all"
    assert url.partition("#")[0] == status_callback_url("https://hooks.example.com", "t1")
