"""The one place that names and shapes every exchange and queue.

Declaration is idempotent: each service declares what it uses at start-up. Changing a queue's
arguments means a new queue name (RabbitMQ refuses a re-declare with other arguments), so the
arguments are part of the name helpers' contract — never edit them in place.

Flow:
    recipients (direct, key = tenant id) -> dispatch.<tenant> (single active consumer)
    dispatcher -> send (direct) -> send queue -> senders
    sender, transient failure -> retry.<N>s (fanout) -> retry queue with a fixed TTL, which
        dead-letters back into ``recipients`` with the original key (the tenant id), so retries
        pass the tenant's throttle again
    any consumer, message it cannot process -> parked (direct, key = source queue) -> <queue>.dlq
    tracker webhooks -> status / inbound queues -> tracker consumer
    other systems -> commands (campaign.*) and booking (booking.*) -> segmenter
    lifecycle and tenant changes -> events (topic) -> anyone (dispatchers and senders bind
        private auto-delete queues)

Quorum queues. Every durable queue (work, dispatch, retry and parked queues) is a quorum queue:
replicated on a majority of the broker cluster's nodes, so losing one node loses no message. A
work or dispatch queue dead-letters a message delivered more than ``DELIVERY_LIMIT`` times into
the parked exchange under its own name (so it lands in ``<queue>.dlq``): a message that crashes
every consumer it reaches cannot hold the queue, and the tenant behind it, forever. Consumers
park a failing message themselves sooner (``WCE_CONSUMER_MAX_DELIVERIES``, below this limit,
with the ``x-parked-*`` headers); the broker's limit is the backstop for a message whose consumer
dies before it can (``x-death`` header with reason ``delivery_limit``). Retry queues dead-letter
expired messages back into the recipients exchange at least once (``x-dead-letter-strategy``).
Private queues of one process stay classic (exclusive, auto-deleted).

Queue names carry a generation (``QUEUE_GENERATION``): queues of the classic generation were
named without one (``wce.send``, ``wce.dispatch.<tenant>``, ``wce.retry.5s``, …). RabbitMQ cannot
turn a classic queue into a quorum queue, so the quorum queues are new queues beside the old.
Migrating a running installation (the operations guide, deploy/k8s/README.md, has the commands):
deploy the new release — it declares and consumes only the new queues, and the exchanges and
routing keys are unchanged, so new messages flow to both generations' bound queues until the old
ones are unbound — then move what is left in each old queue into the exchange it came from
(a shovel per queue, or re-publish), and delete the old queues once empty. Nothing is lost on
the way: PostgreSQL holds every recipient, and the senders' sweeper re-publishes rows whose
broker message did not arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, ExchangeType
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.events import CampaignLifecycle

PREFIX = "wce"

RECIPIENTS_EXCHANGE = f"{PREFIX}.recipients"
SEND_EXCHANGE = f"{PREFIX}.send"
PARKED_EXCHANGE = f"{PREFIX}.parked"
STATUS_EXCHANGE = f"{PREFIX}.status"
EVENTS_EXCHANGE = f"{PREFIX}.events"
COMMANDS_EXCHANGE = f"{PREFIX}.commands"
BOOKING_EXCHANGE = f"{PREFIX}.booking"

# Part of every durable queue's name; a change of any queue's arguments means a new generation.
# "v2": quorum queues with a delivery limit (the first generation, classic queues, had no suffix).
QUEUE_GENERATION = "v2"
# Deliveries a quorum work queue allows before it dead-letters the message into its parked queue.
# Above WCE_CONSUMER_MAX_DELIVERIES (whose bound it is), so consumers park first, with reasons.
DELIVERY_LIMIT = 50

SEND_QUEUE = f"{PREFIX}.send.{QUEUE_GENERATION}"
STATUS_QUEUE = f"{PREFIX}.status.callbacks.{QUEUE_GENERATION}"
INBOUND_QUEUE = f"{PREFIX}.status.inbound.{QUEUE_GENERATION}"
COMMANDS_QUEUE = f"{PREFIX}.segmenter.commands.{QUEUE_GENERATION}"
BOOKING_QUEUE = f"{PREFIX}.segmenter.booking.{QUEUE_GENERATION}"
# Campaign lifecycle events for outbound webhooks (the trackers turn them into deliveries).
WEBHOOK_LIFECYCLE_QUEUE = f"{PREFIX}.tracker.webhooks.lifecycle.{QUEUE_GENERATION}"

STATUS_ROUTING_KEY = "callback"
INBOUND_ROUTING_KEY = "inbound"
SEND_ROUTING_KEY = "chunk"

ATTEMPT_HEADER = "x-attempt"
# Headers of a parked message (in ``<queue>.dlq``): why, from where, the error, after how many
# deliveries; an id to address it, when, and its original exchange and routing key for a replay.
PARK_REASON_HEADER = "x-parked-reason"
PARK_QUEUE_HEADER = "x-parked-source-queue"
PARK_ERROR_HEADER = "x-parked-error"
PARK_DELIVERY_COUNT_HEADER = "x-parked-delivery-count"
PARK_ID_HEADER = "x-parked-id"
PARK_AT_HEADER = "x-parked-at"
PARK_EXCHANGE_HEADER = "x-parked-exchange"
PARK_ROUTING_KEY_HEADER = "x-parked-routing-key"
# Set by quorum queues: how many times the message was delivered before.
DELIVERY_COUNT_HEADER = "x-delivery-count"


# Per-tenant dispatch queues are quorum queues by default (replicated: a node's loss moves their
# leaders, as the cluster test shows). Each quorum queue is a Raft group of its own, and a tenant
# brings two (dispatch and parked): a single node holding hundreds of them stalls (measured on a
# 2-core node: 700 quorum queues declared in 6 s left new AMQP connections waiting over 15 s). A
# single-node installation with many tenants, or one that prefers broker capacity to replication
# of this one queue, sets WCE_DISPATCH_QUEUE_TYPE=classic: the tenant queues are then the classic
# generation's (``wce.dispatch.<tenant>``, single active consumer, parked queue beside it) — losing
# one loses nothing durable, since PostgreSQL holds every recipient and the sweeper re-publishes
# rows whose message did not arrive. Consumers park failing messages themselves on either type.
DISPATCH_QUEUE_TYPES = ("quorum", "classic")


class _DispatchQueueSettings(BaseSettings):
    """The one setting the names depend on, read from the same sources as every setting (the
    environment, then .env); shared.settings imports this module, so it cannot be used here."""

    model_config = SettingsConfigDict(env_prefix="WCE_", env_file=".env", extra="ignore")

    dispatch_queue_type: Literal["quorum", "classic"] = "quorum"


def dispatch_queue_type() -> str:
    """The configured type; read where a name is needed (declarations and listings, not per
    message), since every process derives the names of the tenant queues itself."""
    return _DispatchQueueSettings().dispatch_queue_type


def dispatch_queue_name(tenant_id: str, queue_type: str | None = None) -> str:
    if (queue_type or dispatch_queue_type()) == "classic":
        return f"{PREFIX}.dispatch.{tenant_id}"
    return f"{PREFIX}.dispatch.{QUEUE_GENERATION}.{tenant_id}"


def retry_exchange_name(delay_s: int) -> str:
    return f"{PREFIX}.retry.{delay_s}s"


def retry_queue_name(delay_s: int) -> str:
    return f"{PREFIX}.retry.{delay_s}s.{QUEUE_GENERATION}"


def parked_queue_name(queue: str) -> str:
    return f"{queue}.dlq"


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: ExchangeType


@dataclass(frozen=True)
class QueueSpec:
    name: str
    arguments: tuple[tuple[str, Any], ...] = ()
    bindings: tuple[tuple[str, str], ...] = field(default=())  # (exchange, routing key)

    def args(self) -> dict[str, Any]:
        return dict(self.arguments)


EXCHANGES: tuple[ExchangeSpec, ...] = (
    ExchangeSpec(RECIPIENTS_EXCHANGE, ExchangeType.DIRECT),
    ExchangeSpec(SEND_EXCHANGE, ExchangeType.DIRECT),
    ExchangeSpec(PARKED_EXCHANGE, ExchangeType.DIRECT),
    ExchangeSpec(STATUS_EXCHANGE, ExchangeType.DIRECT),
    ExchangeSpec(EVENTS_EXCHANGE, ExchangeType.TOPIC),
    ExchangeSpec(COMMANDS_EXCHANGE, ExchangeType.TOPIC),
    ExchangeSpec(BOOKING_EXCHANGE, ExchangeType.TOPIC),
)


QUORUM: tuple[tuple[str, Any], ...] = (("x-queue-type", "quorum"),)
# Dead-lettering that waits for the target queue's confirm (needs reject-publish overflow).
AT_LEAST_ONCE: tuple[tuple[str, Any], ...] = (
    ("x-dead-letter-strategy", "at-least-once"),
    ("x-overflow", "reject-publish"),
)


def work_queue_arguments(name: str) -> tuple[tuple[str, Any], ...]:
    """A quorum queue whose messages delivered more than DELIVERY_LIMIT times go to its parked
    queue (``<name>.dlq``), the way consumers park them."""
    return (
        *QUORUM,
        ("x-delivery-limit", DELIVERY_LIMIT),
        ("x-dead-letter-exchange", PARKED_EXCHANGE),
        ("x-dead-letter-routing-key", name),
        *AT_LEAST_ONCE,
    )


def work_queue(name: str, *bindings: tuple[str, str]) -> QueueSpec:
    return QueueSpec(name, arguments=work_queue_arguments(name), bindings=bindings)


def dispatch_queue(tenant_id: str, queue_type: str | None = None) -> QueueSpec:
    # Single active consumer: however many dispatcher replicas run, one holds a tenant's
    # throttle at a time, so replicas never multiply the tenant's rate.
    queue_type = queue_type or dispatch_queue_type()
    name = dispatch_queue_name(tenant_id, queue_type)
    replication = work_queue_arguments(name) if queue_type == "quorum" else ()
    return QueueSpec(
        name,
        arguments=(*replication, ("x-single-active-consumer", True)),
        bindings=((RECIPIENTS_EXCHANGE, tenant_id),),
    )


def retry_queue(delay_s: int) -> QueueSpec:
    # A queue-level TTL, never per-message expiration: with one fixed TTL per queue every
    # message at the head is the next to expire, so none waits behind a longer one. Nothing
    # consumes a retry queue: expiry dead-letters each message back into the recipients exchange
    # with its routing key (the tenant), at least once.
    return QueueSpec(
        retry_queue_name(delay_s),
        arguments=(
            *QUORUM,
            ("x-message-ttl", delay_s * 1000),
            ("x-dead-letter-exchange", RECIPIENTS_EXCHANGE),
            *AT_LEAST_ONCE,
        ),
        bindings=((retry_exchange_name(delay_s), ""),),
    )


def parked_queue(queue: str, *, quorum: bool = True) -> QueueSpec:
    # Replicated like the work it holds; no delivery limit, so inspecting it never loses it.
    return QueueSpec(
        parked_queue_name(queue), arguments=QUORUM if quorum else (), bindings=((PARKED_EXCHANGE, queue),)
    )


SEND = work_queue(SEND_QUEUE, (SEND_EXCHANGE, SEND_ROUTING_KEY))
STATUS = work_queue(STATUS_QUEUE, (STATUS_EXCHANGE, STATUS_ROUTING_KEY))
INBOUND = work_queue(INBOUND_QUEUE, (STATUS_EXCHANGE, INBOUND_ROUTING_KEY))
COMMANDS = work_queue(COMMANDS_QUEUE, (COMMANDS_EXCHANGE, "campaign.#"))
BOOKING = work_queue(BOOKING_QUEUE, (BOOKING_EXCHANGE, "booking.#"))
WEBHOOK_LIFECYCLE = work_queue(
    WEBHOOK_LIFECYCLE_QUEUE, *((EVENTS_EXCHANGE, key) for key in CampaignLifecycle.ROUTING_KEYS)
)

WORK_QUEUES: tuple[QueueSpec, ...] = (SEND, STATUS, INBOUND, COMMANDS, BOOKING, WEBHOOK_LIFECYCLE)


async def declare_exchanges(
    channel: AbstractChannel, retry_tiers_s: list[int]
) -> dict[str, AbstractExchange]:
    exchanges: dict[str, AbstractExchange] = {}
    for spec in EXCHANGES:
        exchanges[spec.name] = await channel.declare_exchange(spec.name, spec.type, durable=True)
    for delay in retry_tiers_s:
        name = retry_exchange_name(delay)
        exchanges[name] = await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
    return exchanges


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.args())
    for exchange, routing_key in spec.bindings:
        await queue.bind(exchange, routing_key=routing_key)
    return queue


async def declare_all(
    channel: AbstractChannel,
    retry_tiers_s: list[int],
    tenant_ids: list[str] = (),  # type: ignore[assignment]
) -> None:
    """Declare the whole static topology (and the given tenants' dispatch queues)."""
    await declare_exchanges(channel, retry_tiers_s)
    for spec in WORK_QUEUES:
        await declare_queue(channel, spec)
        await declare_queue(channel, parked_queue(spec.name))
    for delay in retry_tiers_s:
        await declare_queue(channel, retry_queue(delay))
    for tenant_id in tenant_ids:
        await declare_tenant(channel, tenant_id)


async def declare_tenant(
    channel: AbstractChannel, tenant_id: str, queue_type: str | None = None
) -> AbstractQueue:
    queue_type = queue_type or dispatch_queue_type()
    queue = await declare_queue(channel, dispatch_queue(tenant_id, queue_type))
    parked = parked_queue(dispatch_queue_name(tenant_id, queue_type), quorum=queue_type == "quorum")
    await declare_queue(channel, parked)
    return queue


def persistent_message(
    body: bytes, *, message_type: str, headers: dict[str, Any] | None = None
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=message_type,
        headers=headers or {},
    )


def private_queue_name(service: str, instance: str, purpose: str) -> str:
    """An exclusive, auto-deleted queue of one process (event subscriptions, chunk
    acknowledgements): gone with its connection, so nothing piles up for a dead process."""
    return f"{PREFIX}.{service}.{instance}.{purpose}"


async def declare_private_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    return await channel.declare_queue(name, exclusive=True, auto_delete=True)
