"""Accepting a Twilio webhook: check its signature with the tenant's token, hand it to the broker.

Nothing is written anywhere before the signature holds, and a webhook naming a tenant that is
not active is refused without a database query; a request that fails is rejected with a
reason from a fixed vocabulary (it labels a metric). The broker's confirm is awaited before the
webhook is answered, so a 200 means the callback is durable.
"""

from __future__ import annotations

import enum
import time
import uuid
from typing import NamedTuple

from services.tracker.grouping import CallbackGrouper
from services.tracker.signing import FormParams, signature_holds, single_values
from services.tracker.status import names_a_message
from services.tracker.tenant_gate import ActiveTenants
from services.tracker.tokens import TokenCache
from services.tracker.wire import canonical_uuid, encode_callback
from shared import topology
from shared.broker import Publisher
from shared.events import InboundMessage
from shared.logging import get_logger

log = get_logger(__name__)


class Kind(enum.StrEnum):
    STATUS = "status"
    INBOUND = "inbound"


class RejectReason(enum.StrEnum):
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_TENANT = "unknown_tenant"
    UNREADABLE_TOKEN = "unreadable_token"


class Rejected(Exception):
    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class Malformed(Exception):
    """A correctly signed webhook without the fields that make it usable."""


class Webhook(NamedTuple):
    kind: Kind
    tenant: str
    # The URL Twilio signed, and the params the signature covers (none for a GET).
    url: str
    signed_params: FormParams
    params: FormParams
    signature: str | None
    idempotency_token: str | None


class Ingest:
    def __init__(
        self, *, tenants: ActiveTenants, tokens: TokenCache, publisher: Publisher, grouper: CallbackGrouper
    ) -> None:
        self._tenants = tenants
        self._tokens = tokens
        self._publisher = publisher
        self._grouper = grouper

    async def accept(self, webhook: Webhook) -> None:
        """Publish the webhook's content, or raise Rejected, Malformed or BrokerUnavailable."""
        if not webhook.signature:
            raise Rejected(RejectReason.MISSING_SIGNATURE)
        tenant_id = canonical_uuid(webhook.tenant)
        if tenant_id is None or not await self._tenants.admits(tenant_id):
            # Unknown and deactivated tenants alike: the answer must not tell them apart.
            raise Rejected(RejectReason.UNKNOWN_TENANT)
        await self._verify(tenant_id, webhook)
        params = single_values(webhook.params)
        if webhook.kind is Kind.STATUS:
            if not names_a_message(params):
                raise Malformed("a status callback needs MessageSid and MessageStatus")
            await self._grouper.submit(
                encode_callback(
                    tenant_id=tenant_id,
                    params=params,
                    idempotency_token=webhook.idempotency_token,
                    received_at=time.time(),
                )
            )
        else:
            inbound = InboundMessage(tenant_id=uuid.UUID(tenant_id), params=params, received_at=time.time())
            await self._publisher.publish(topology.STATUS_EXCHANGE, topology.INBOUND_ROUTING_KEY, inbound)

    async def _verify(self, tenant_id: str, webhook: Webhook) -> None:
        assert webhook.signature is not None
        try:
            token = await self._tokens.get(tenant_id)
        except ValueError as exc:
            log.error("tenant auth token cannot be decrypted", tenant_id=tenant_id, error=str(exc))
            raise Rejected(RejectReason.UNREADABLE_TOKEN) from exc
        if token is None:
            raise Rejected(RejectReason.UNKNOWN_TENANT)
        if signature_holds(token, webhook.url, webhook.signed_params, webhook.signature):
            return
        # The tenant may just have rotated its token.
        fresh = await self._tokens.refresh(tenant_id)
        if fresh is not None and signature_holds(
            fresh, webhook.url, webhook.signed_params, webhook.signature
        ):
            return
        raise Rejected(RejectReason.BAD_SIGNATURE)
