"""Recipients a status callback's refusal sent back to wait (WhatsApp's spam rate 131048 and pair
rate 131056, reported after Twilio accepted the create): how long they wait, and the retry of a
pair-rate refusal published into the retry tier that waits at least that long.

A spam refusal publishes nothing here: the whole tenant is held (the sender's maintenance sees the
waiting recipients and holds the tenant's sending), and the hold's end publishes its campaigns'
waiting recipients again. A retry that is never published (the broker was away) is not lost:
the recipient is recorded as waiting with its due time, and the senders' sweep publishes it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from uuid import UUID

from services.tracker.status import RecipientRow, RefusalWaits
from shared import metrics, topology
from shared.broker import BrokerUnavailable, Publisher
from shared.events import RecipientBatch
from shared.logging import get_logger
from shared.settings import Settings
from shared.twilio_errors import PAIR_RATE_CODE, next_tier

log = get_logger(__name__)
SOURCE = "callback"


def pair_rate_tier_s(pair_rate_retry_s: float, tiers: list[int]) -> int:
    """The retry tier of a pair-rate refusal: the shortest that waits at least
    ``WCE_PAIR_RATE_RETRY_S`` (the longest when none does), as the sender picks for one at send
    time."""
    tier = next_tier(1, pair_rate_retry_s, tiers, max_attempts=2)
    return tier if tier is not None else max(tiers, default=0)


def refusal_waits(settings: Settings) -> RefusalWaits:
    return RefusalWaits(
        pair_rate_s=pair_rate_tier_s(settings.pair_rate_retry_s, settings.retry_tiers_s),
        spam_hold_s=settings.spam_hold_s,
    )


async def publish_retries(
    publisher: Publisher, deferred: Sequence[RecipientRow], waits: RefusalWaits
) -> None:
    """Publish the pair-rate retries of ``deferred`` and log every refusal sent back to wait: one
    INFO line per tenant, campaign, code and tier, never a phone number."""
    if not deferred:
        return
    tier = int(waits.pair_rate_s)
    logged = Counter((row.tenant_id, row.campaign_id, row.error_code) for row in deferred)
    for (tenant_id, campaign_id, code), count in logged.items():
        log.info(
            "retry scheduled",
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            code=code,
            tier=f"{tier}s" if code == PAIR_RATE_CODE else "spam hold",
            recipients=count,
            source=SOURCE,
        )
    retries: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in deferred:
        if row.error_code == PAIR_RATE_CODE:
            retries[(row.tenant_id, row.campaign_id)].append(row.id)
    try:
        for (tenant_id, campaign_id), ids in retries.items():
            batch = RecipientBatch(
                tenant_id=UUID(tenant_id), campaign_id=UUID(campaign_id), recipient_ids=ids
            )
            await publisher.publish(topology.retry_exchange_name(tier), tenant_id, batch)
            metrics.RETRIES.labels(tenant_id, f"{tier}s").inc(len(ids))
    except BrokerUnavailable as exc:
        log.warning("retry publish failed; left to the senders' sweep", error=str(exc))
