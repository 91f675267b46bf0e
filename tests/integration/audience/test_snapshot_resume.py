"""A snapshot interrupted at any step — an error, the broker lost, the segmenter gone — resumes
where it was and completes with every recipient inserted once and published once.

Each case stops the snapshot at one step (a process killed there leaves the database and the
broker as the failure does: an uncommitted chunk rolls back, nothing after the step happens),
then runs it again as the campaign monitor would, until it completes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg
import pytest
from snapshot_campaigns import published_ids, running_campaign

from services.segmenter import snapshot
from shared.broker import BrokerUnavailable, Publisher

# Eleven recipients: chunks of 2 then 3 numbers make four chunks, the last one closing the range.
CUSTOMERS: dict[str, str | None] = {f"c{n}": f"+1415556{n:04d}" for n in range(11)}

pytestmark = pytest.mark.usefixtures("small_chunks")


class InjectedFailure(RuntimeError):
    pass


class Interruption:
    """Fails the ``nth`` call of one step of the snapshot, once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, step: str, nth: int) -> None:
        self.step, self.nth, self.calls, self.fired = step, nth, 0, False
        if step == "chunk insert":
            self._wrap(monkeypatch, snapshot, "snapshot_chunk", before=True)
        elif step == "after chunk commit":
            self._wrap(monkeypatch, snapshot.CampaignPublisher, "publish_inserted", before=True)
        elif step == "batch publication":
            self._wrap(monkeypatch, snapshot, "publish_ids", before=True, error=BrokerUnavailable)
        elif step == "after chunk publication":
            self._wrap(monkeypatch, snapshot.CampaignPublisher, "publish_inserted", before=False)
        elif step == "final publication":
            self._wrap(monkeypatch, snapshot.CampaignPublisher, "publish_pending", before=True)
        else:
            raise AssertionError(step)

    def _wrap(
        self,
        monkeypatch: pytest.MonkeyPatch,
        owner: Any,
        name: str,
        *,
        before: bool,
        error: type = InjectedFailure,
    ) -> None:
        original = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            due = not self.fired and self.calls == self.nth
            if due and before:
                self.fired = True
                raise error(f"injected at {self.step} #{self.nth}")
            result = await original(*args, **kwargs)
            if due:
                self.fired = True
                raise error(f"injected after {self.step} #{self.nth}")
            return result

        monkeypatch.setattr(owner, name, wrapper)


# (step, which call): every chunk's insert, every chunk's commit (the 4th is the last chunk,
# which also completes the snapshot), a batch publication early, in the middle and last, the
# chunk publications, and the final sweep of unpublished rows.
CASES = [
    *[("chunk insert", n) for n in (1, 2, 4)],
    *[("after chunk commit", n) for n in (1, 2, 3, 4)],
    *[("batch publication", n) for n in (1, 3, 6)],
    *[("after chunk publication", n) for n in (2, 4)],
    ("final publication", 1),
]


@pytest.mark.parametrize(("step", "nth"), CASES, ids=[f"{step} #{nth}" for step, nth in CASES])
async def test_an_interrupted_snapshot_resumes_and_publishes_every_recipient_once(
    pool: asyncpg.Pool, broker: Publisher, monkeypatch: pytest.MonkeyPatch, step: str, nth: int
) -> None:
    # Given a running campaign of eleven recipients and a snapshot that fails at one step
    tenant_id, campaign_id = await running_campaign(pool, broker, CUSTOMERS)
    campaign_publisher = snapshot.CampaignPublisher(pool, broker, batch_size=2)
    interruption = Interruption(monkeypatch, step, nth)

    # When it runs, fails there, and is run again until it completes
    runs = 0
    while True:
        runs += 1
        assert runs <= 3, "the snapshot never completed"
        try:
            total = await snapshot.run_snapshot(
                pool, campaign_publisher, tenant_id=tenant_id, campaign_id=campaign_id
            )
        except (InjectedFailure, BrokerUnavailable):
            continue
        break

    # Then it failed once, and completed with every recipient inserted once and published once
    assert interruption.fired and runs == 2
    inserted = [
        row["id"] for row in await pool.fetch("SELECT id FROM recipients WHERE campaign_id = $1", campaign_id)
    ]
    published = Counter(await published_ids(broker, tenant_id))
    assert total == len(inserted) == 11
    campaign = await pool.fetchrow(
        "SELECT snapshot_completed_at, published_upto FROM campaigns WHERE id = $1", campaign_id
    )
    assert campaign["snapshot_completed_at"] is not None
    assert campaign["published_upto"] == max(inserted)
    assert set(published) == set(inserted)
    if step == "after chunk publication":
        # The one window no resumption can close: a process stopped after the broker confirmed
        # a chunk and before its cursor moved publishes that chunk's batches again.
        assert sum(published.values()) - len(inserted) <= 3
    elif step == "batch publication":
        # Batches of one chunk are confirmed together: a later batch of the chunk the broker
        # took before the failing one was refused goes again (one batch of two here).
        assert sum(published.values()) - len(inserted) <= 2
    else:
        assert max(published.values()) == 1, published


async def test_a_campaign_stopped_after_its_last_chunk_completes_without_inserting_again(
    pool: asyncpg.Pool, broker: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a snapshot stopped right after its last chunk committed, before any publication of it
    tenant_id, campaign_id = await running_campaign(pool, broker, CUSTOMERS)
    campaign_publisher = snapshot.CampaignPublisher(pool, broker, batch_size=2)
    Interruption(monkeypatch, "after chunk commit", 4)
    with pytest.raises(InjectedFailure):
        await snapshot.run_snapshot(pool, campaign_publisher, tenant_id=tenant_id, campaign_id=campaign_id)

    # Then the campaign already counts its eleven recipients, and the monitor sees work to publish
    campaign = await pool.fetchrow(
        "SELECT total, snapshot_completed_at FROM campaigns WHERE id = $1", campaign_id
    )
    assert campaign["total"] == 11 and campaign["snapshot_completed_at"] is not None
