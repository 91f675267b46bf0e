"""The tracker's public webhook URLs, shared by the sender (which puts them on every message) and
the tracker (which rebuilds them to check signatures): both must agree byte for byte."""

from __future__ import annotations

from uuid import UUID


def status_callback_url(public_base_url: str, tenant_id: UUID | str) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/status/{tenant_id}"


# Twilio does not retry a status callback it could not deliver unless asked: connection overrides
# in the URL's fragment (never sent to the server, not part of the signed URL) ask for up to five
# retries whatever the failure — refused connection, timeout or a 5xx while the tracker cannot yet
# make the callback durable.
CALLBACK_CONNECTION_OVERRIDES = "rc=5&rp=all"


def status_callback_request_url(public_base_url: str, tenant_id: UUID | str) -> str:
    """The StatusCallback a message is created with: the tracker's URL and its retry request."""
    return f"{status_callback_url(public_base_url, tenant_id)}#{CALLBACK_CONNECTION_OVERRIDES}"


def inbound_url(public_base_url: str, tenant_id: UUID | str) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/inbound/{tenant_id}"
