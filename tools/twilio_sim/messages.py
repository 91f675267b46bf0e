"""The Message resource: its state, status transitions and JSON representation."""

from __future__ import annotations

from typing import Any

from .errors import async_text
from .formats import API_VERSION, rfc2822

# Callbacks may arrive or fire out of order; a status never moves down this ranking.
_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "received": 4,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
}

# A WhatsApp sender used when a Messaging Service picks the sender.
SERVICE_SENDER = "whatsapp:+14155238886"


class Message:
    __slots__ = (
        "account_sid",
        "body",
        "created",
        "direction",
        "error_code",
        "from_",
        "messaging_service_sid",
        "num_media",
        "sent",
        "seq",
        "sid",
        "status",
        "status_callback",
        "to",
        "updated",
    )

    def __init__(
        self,
        *,
        sid: str,
        seq: int,
        account_sid: str,
        to: str,
        from_: str | None,
        body: str,
        status: str,
        created: float,
        direction: str = "outbound-api",
        messaging_service_sid: str | None = None,
        num_media: int = 0,
        status_callback: str | None = None,
    ) -> None:
        self.sid = sid
        self.seq = seq
        self.account_sid = account_sid
        self.to = to
        self.from_ = from_
        self.body = body
        self.status = status
        self.error_code: int | None = None
        self.created = created
        self.updated = created
        self.sent: float | None = created if direction == "inbound" else None
        self.direction = direction
        self.messaging_service_sid = messaging_service_sid
        self.num_media = num_media
        self.status_callback = status_callback

    def advance(self, status: str, error_code: int | None, at: float) -> bool:
        """Move to ``status`` unless that would be a downgrade; True if it changed."""
        if _RANK[status] <= _RANK[self.status]:
            return False
        self.status = status
        self.updated = at
        if error_code is not None:
            self.error_code = error_code
        if self.from_ is None:
            self.from_ = SERVICE_SENDER
        if self.sent is None and status in ("sent", "delivered", "read", "undelivered"):
            self.sent = at
        return True

    @property
    def sent_or_created(self) -> float:
        # Date filters must find a message that is still queued (a reconciler looks
        # for it right after a timed-out create), so fall back to the creation time.
        return self.sent if self.sent is not None else self.created

    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        uri = self.uri()
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.created),
            "date_sent": rfc2822(self.sent) if self.sent is not None else None,
            "date_updated": rfc2822(self.updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": async_text(self.error_code) if self.error_code is not None else None,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(self.num_media),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": uri[: -len(".json")] + "/Media.json"},
            "to": self.to,
            "uri": uri,
        }
