"""The tracker's public webhook URLs, shared by the sender (which puts them on every message) and
the tracker (which rebuilds them to check signatures): both must agree byte for byte."""

from __future__ import annotations

from uuid import UUID


def status_callback_url(public_base_url: str, tenant_id: UUID | str) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/status/{tenant_id}"


def inbound_url(public_base_url: str, tenant_id: UUID | str) -> str:
    return f"{public_base_url.rstrip('/')}/twilio/inbound/{tenant_id}"
