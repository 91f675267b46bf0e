"""Request checks Twilio applies to a create call before accepting it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from .errors import TwilioError, sync_error

_ADDRESS_RE = re.compile(r"^(?:whatsapp:)?\+[1-9][0-9]{6,14}$")
MAX_BODY_CHARS = 1600


class CreateRequest(NamedTuple):
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    content_sid: str | None
    content_variables: dict[str, Any]
    status_callback: str | None
    num_media: int


def parse_create(
    form: Mapping[str, str], num_media: int, content_exists: Callable[[str], bool]
) -> CreateRequest | TwilioError:
    """The create request, or the Twilio error a real API would answer with.

    A simplification: ``ContentSid`` must name one of the account's templates
    (every account starts with the default set), otherwise 21655, instead of
    Twilio's later, asynchronous template failures.
    """
    to = form.get("To", "")
    if not to:
        return sync_error(21604)
    if not _ADDRESS_RE.match(to):
        return sync_error(21211)
    from_ = form.get("From") or None
    service = form.get("MessagingServiceSid") or None
    if from_ is None and service is None:
        return sync_error(21603)
    body = form.get("Body", "")
    content_sid = form.get("ContentSid") or None
    if not body and content_sid is None and num_media == 0:
        return sync_error(21602)
    if len(body) > MAX_BODY_CHARS:
        return sync_error(21617)
    if content_sid is not None and not content_exists(content_sid):
        return sync_error(21655)
    variables: dict[str, Any] = {}
    raw_variables = form.get("ContentVariables")
    if raw_variables:
        try:
            parsed = orjson.loads(raw_variables)
        except orjson.JSONDecodeError:
            return sync_error(21656)
        if not isinstance(parsed, dict):
            return sync_error(21656)
        variables = parsed
    return CreateRequest(
        to=to,
        from_=from_,
        messaging_service_sid=service,
        body=body,
        content_sid=content_sid,
        content_variables=variables,
        status_callback=form.get("StatusCallback") or None,
        num_media=num_media,
    )
