"""Consumer of ``wce.segmenter.commands.v2``: campaign commands from other systems and from senders
(auto-pause). Each routing key has a handler; an unknown key or a bad payload is parked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError, field_validator

from services.segmenter.campaigns import CampaignNotFound, InvalidTransition, Lifecycle
from shared.broker import PoisonMessage, Publisher, consume
from shared.events import CampaignCommand, Event
from shared.logging import get_logger
from shared.publishers import PublisherCheck

log = get_logger(__name__)

CommandHandler = Callable[[bytes], Awaitable[None]]


class RawCommand(Event):
    """Any body: commands are decoded per routing key by their handler, whose model also judges
    the version (``campaign.requested`` reads versions 1 and 2)."""

    model_config = Event.model_config | {"extra": "allow"}

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        return value


def lifecycle_handlers(lifecycle: Lifecycle) -> dict[str, CommandHandler]:
    async def pause(body: bytes) -> None:
        command = CampaignCommand.model_validate_json(body)
        await lifecycle.pause(command.tenant_id, command.campaign_id, command.reason)

    async def resume(body: bytes) -> None:
        command = CampaignCommand.model_validate_json(body)
        await lifecycle.resume(command.tenant_id, command.campaign_id)

    async def cancel(body: bytes) -> None:
        command = CampaignCommand.model_validate_json(body)
        await lifecycle.cancel(command.tenant_id, command.campaign_id)

    return {"campaign.pause": pause, "campaign.resume": resume, "campaign.cancel": cancel}


async def consume_commands(
    queue: AbstractQueue,
    publisher: Publisher,
    handlers: dict[str, CommandHandler],
    publishers: PublisherCheck | None = None,
) -> str:
    async def on_command(command: RawCommand, message: AbstractIncomingMessage) -> None:
        handler = handlers.get(message.routing_key or "")
        if handler is None:
            raise PoisonMessage(f"no handler for routing key {message.routing_key!r}")
        if publishers is not None and publishers.enabled:
            # Every command names its tenant; the publisher must be allowed to act for it.
            try:
                tenant_id = UUID(str((command.model_extra or {})["tenant_id"]))
            except (KeyError, ValueError) as exc:
                raise PoisonMessage(f"invalid {message.routing_key}: no valid tenant_id") from exc
            await publishers.require(message.user_id, tenant_id)
        try:
            await handler(message.body)
        except ValidationError as exc:
            raise PoisonMessage(f"invalid {message.routing_key}: {exc}") from exc
        except CampaignNotFound as exc:
            raise PoisonMessage(f"campaign not found: {exc}") from exc
        except InvalidTransition as exc:
            # Pausing a campaign that is already paused (two senders auto-pausing) is not an error.
            log.info("command ignored", routing_key=message.routing_key, reason=str(exc))

    return await consume(queue, RawCommand, on_command, publisher)
