"""Twilio error codes the simulator can produce, with their HTTP status and text.

Codes answered synchronously carry the HTTP status of the create call; every
other code is reported asynchronously through the message's final status.
"""

from __future__ import annotations

from typing import NamedTuple


class TwilioError(NamedTuple):
    code: int
    http_status: int
    message: str


_SYNC: dict[int, tuple[int, str]] = {
    20001: (400, "Invalid query parameter"),
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21408: (
        400,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    ),
    21602: (400, "Message body is required."),
    21603: (400, "The 'From' phone number is required."),
    21604: (400, "The 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21655: (400, "The ContentSid is Invalid."),
    21656: (400, "The ContentVariables Parameter is invalid."),
    63018: (429, "Rate limit exceeded for Channel"),
    # Meta's WhatsApp codes, answered at once here (see faults.decide_create).
    131048: (400, "Spam rate limit hit"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
}

_ASYNC_TEXT: dict[int, str] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    63003: "Channel could not find To address",
    63005: "Channel did not accept the content of the message",
    63007: "Twilio could not find a Channel with the specified From address",
    63013: "Channel policy violation",
    63014: "Channel message blocked by user action",
    63016: "Failed to send freeform message because you are outside the allowed window.",
    63017: "Rate limit exceeded for account",
    63021: "Channel invalid content error",
    63024: "Invalid message recipient",
    63027: "Template does not exist for a language and locale",
    63032: "User's number is part of an experiment",
    63041: "Template paused",
    63042: "Template disabled",
    63049: "Meta chose not to deliver this WhatsApp marketing message",
    63051: "WhatsApp Business Account is locked",
    131048: "Spam rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
}

# Carrier-level failures surface after the message left Twilio ("sent", then
# "undelivered"); channel rejections fail before sending.
_UNDELIVERED_RANGE = range(30003, 30009)

# Codes a number can be configured with that reject the create call itself.
PERMANENT_SYNC_CODES = frozenset({20003, 21211, 21408, 21610, 21614, 21617, 21656})


def sync_error(code: int) -> TwilioError:
    http_status, message = _SYNC[code]
    return TwilioError(code, http_status, message)


def is_sync(code: int) -> bool:
    return code in PERMANENT_SYNC_CODES


def async_text(code: int) -> str:
    return _ASYNC_TEXT.get(code, "Message delivery failed")


def async_final_status(code: int) -> str:
    return "undelivered" if code in _UNDELIVERED_RANGE else "failed"


def more_info(code: int) -> str:
    return f"https://www.twilio.com/docs/errors/{code}"
