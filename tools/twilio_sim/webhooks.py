"""Form payloads Twilio POSTs to webhooks, signed the way Twilio signs them."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote_plus, urlencode

from shared.twilio_signature import SIGNATURE_HEADER, compute_signature, sign_string

from .errors import async_text
from .formats import API_VERSION
from .messages import Message

_EVENT_TYPES = {"delivered": "DELIVERED", "read": "READ", "undelivered": "UNDELIVERED"}
_USER_AGENT = "TwilioProxy/1.1"


class SignedRequest(NamedTuple):
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


_quote = lru_cache(maxsize=16384)(quote_plus)


def status_request(
    auth_token: str,
    url: str,
    message: Message,
    status: str,
    error_code: int | None,
    channel_install_sid: str,
) -> SignedRequest:
    """A signed status callback with the fields captured from real WhatsApp traffic.

    In form order: AccountSid, ApiVersion, From, MessageSid, MessageStatus, SmsSid,
    SmsStatus, To; for WhatsApp numbers ChannelPrefix, ChannelInstallSid,
    ChannelToAddress (last four digits masked), StructuredMessage and, for
    delivered/read/undelivered, EventType; MessagingServiceSid if one was used;
    ErrorCode and ChannelStatusMessage for a failure.

    Every message is called back two or three times, so the form and the string
    to sign are written out directly rather than built from a dict, sorted and
    encoded field by field as ``urlencode`` and ``string_to_sign`` would (the
    unit tests hold this to exactly their output).
    """
    request_url = url.partition("#")[0]
    account_sid = message.account_sid
    sid = message.sid
    to = message.to
    from_ = message.from_ or ""
    service = message.messaging_service_sid
    whatsapp = to.startswith("whatsapp:")
    event = _EVENT_TYPES.get(status) if whatsapp else None

    q_status = _quote(status)
    body = [
        f"AccountSid={_quote(account_sid)}&ApiVersion={API_VERSION}&From={_quote(from_)}"
        f"&MessageSid={_quote(sid)}&MessageStatus={q_status}&SmsSid={_quote(sid)}"
        f"&SmsStatus={q_status}&To={_quote(to)}"
    ]
    # The string to sign: the URL, then names and values with the names in sorted order.
    signed = [f"{request_url}AccountSid{account_sid}ApiVersion{API_VERSION}"]
    if whatsapp:
        masked = to.removeprefix("whatsapp:")[:-4] + "XXXX"
        body.append(
            f"&ChannelPrefix=whatsapp&ChannelInstallSid={_quote(channel_install_sid)}"
            f"&ChannelToAddress={_quote(masked)}&StructuredMessage=false"
        )
        if event is not None:
            body.append(f"&EventType={event}")
        signed.append(f"ChannelInstallSid{channel_install_sid}ChannelPrefixwhatsapp")
    if service is not None:
        body.append(f"&MessagingServiceSid={_quote(service)}")
    if error_code is not None:
        text = async_text(error_code)
        body.append(f"&ErrorCode={error_code}&ChannelStatusMessage={_quote(text)}")
        signed.append(f"ChannelStatusMessage{text}")
    if whatsapp:
        signed.append(f"ChannelToAddress{masked}")
    if error_code is not None:
        signed.append(f"ErrorCode{error_code}")
    if event is not None:
        signed.append(f"EventType{event}")
    signed.append(f"From{from_}MessageSid{sid}MessageStatus{status}")
    if service is not None:
        signed.append(f"MessagingServiceSid{service}")
    signed.append(f"SmsSid{sid}SmsStatus{status}")
    if whatsapp:
        signed.append("StructuredMessagefalse")
    signed.append(f"To{to}")
    signature = sign_string(auth_token, "".join(signed))
    return SignedRequest(request_url, "".join(body).encode(), _headers(signature, f"{sid}-{status}"))


def inbound_params(
    message: Message, profile_name: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Fields of an incoming-message webhook for a WhatsApp text message."""
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": API_VERSION,
        "Body": message.body,
        "From": message.from_ or "",
        "MessageSid": message.sid,
        "MessageType": "text",
        "NumMedia": "0",
        "NumSegments": "1",
        "ProfileName": profile_name,
        "SmsMessageSid": message.sid,
        "SmsSid": message.sid,
        "SmsStatus": "received",
        "To": message.to,
        "WaId": (message.from_ or "").removeprefix("whatsapp:").removeprefix("+"),
    }
    if extra:
        params.update(extra)
    return params


def sign(auth_token: str, url: str, params: dict[str, str], idempotency_token: str) -> SignedRequest:
    # The signature covers the URL as requested, fragment (connection overrides) excluded.
    request_url = url.partition("#")[0]
    signature = compute_signature(auth_token, request_url, params)
    return SignedRequest(request_url, urlencode(params).encode(), _headers(signature, idempotency_token))


def _headers(signature: str, idempotency_token: str) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", _USER_AGENT),
        (SIGNATURE_HEADER, signature),
        ("I-Twilio-Idempotency-Token", idempotency_token),
    )
