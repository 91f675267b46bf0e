"""Form payloads Twilio POSTs to webhooks, signed the way Twilio signs them."""

from __future__ import annotations

from typing import NamedTuple

from shared.twilio_signature import SIGNATURE_HEADER, compute_signature

from .errors import async_text
from .formats import API_VERSION
from .forms import encode_form
from .messages import Message

_EVENT_TYPES = {"delivered": "DELIVERED", "read": "READ", "undelivered": "UNDELIVERED"}
_USER_AGENT = "TwilioProxy/1.1"


class SignedRequest(NamedTuple):
    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]


def status_params(
    message: Message, status: str, error_code: int | None, channel_install_sid: str
) -> dict[str, str]:
    """Fields of a status callback as captured from real WhatsApp traffic."""
    params = {
        "AccountSid": message.account_sid,
        "ApiVersion": API_VERSION,
        "From": message.from_ or "",
        "MessageSid": message.sid,
        "MessageStatus": status,
        "SmsSid": message.sid,
        "SmsStatus": status,
        "To": message.to,
    }
    if message.to.startswith("whatsapp:"):
        number = message.to.removeprefix("whatsapp:")
        params["ChannelPrefix"] = "whatsapp"
        params["ChannelInstallSid"] = channel_install_sid
        params["ChannelToAddress"] = number[:-4] + "XXXX"
        params["StructuredMessage"] = "false"
        event = _EVENT_TYPES.get(status)
        if event is not None:
            params["EventType"] = event
    if message.messaging_service_sid is not None:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
        params["ChannelStatusMessage"] = async_text(error_code)
    return params


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
    headers = (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", _USER_AGENT),
        (SIGNATURE_HEADER, signature),
        ("I-Twilio-Idempotency-Token", idempotency_token),
    )
    return SignedRequest(request_url, encode_form(params), headers)
