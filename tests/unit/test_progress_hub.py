"""The progress hub: caps on open streams, one poll per campaign for all its streams, streams that
end (final state, draft, lifetime) and a slower pace for campaigns that do not move."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.tracker.live import ProgressHub, StreamLimitReached, StreamLimits
from services.tracker.progress import Progress, build_progress

TENANT = uuid.uuid4()
CAMPAIGN = uuid.uuid4()


def limits(**overrides: float) -> StreamLimits:
    values: dict[str, float] = {
        "per_key": 3,
        "total": 5,
        "max_lifetime_s": 60.0,
        "interval_s": 0.01,
        "idle_interval_s": 60.0,
    }
    values.update(overrides)
    return StreamLimits(
        per_key=int(values["per_key"]),
        total=int(values["total"]),
        max_lifetime_s=values["max_lifetime_s"],
        interval_s=values["interval_s"],
        idle_interval_s=values["idle_interval_s"],
    )


def progress(state: str, sent: int = 0) -> Progress:
    return build_progress(
        campaign_id=str(CAMPAIGN),
        state=state,
        pause_reason=None,
        counts={"sent": sent, "pending": 10 - sent},
        sent_in_window=0,
    )


class ScriptedCampaign:
    """Answers polls with the given states in turn (the last one repeats), counting the polls."""

    def __init__(self, *states: str) -> None:
        self.states = states
        self.polls = 0

    async def __call__(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> Progress | None:
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return progress(state, sent=min(self.polls, 10))


async def collect(hub: ProgressHub) -> list[Progress]:
    return [item async for item in hub.follow(TENANT, CAMPAIGN)]


def test_streams_past_the_per_key_cap_are_refused_naming_the_key_and_a_retry_delay() -> None:
    hub = ProgressHub(ScriptedCampaign("running"), limits(idle_interval_s=5.0))
    for _ in range(3):
        hub.admit("key-a")
    with pytest.raises(StreamLimitReached) as refused:
        hub.admit("key-a")
    assert "API key" in str(refused.value)
    assert refused.value.retry_after_s == 5
    hub.admit("key-b")


def test_streams_past_the_total_cap_are_refused_whatever_the_key_until_one_ends() -> None:
    hub = ProgressHub(ScriptedCampaign("running"), limits())
    tickets = [hub.admit(f"key-{index}") for index in range(5)]
    with pytest.raises(StreamLimitReached, match="server"):
        hub.admit("key-new")
    tickets[0].release()
    tickets[0].release()  # released once, however often the stream's end is noticed
    assert hub.open_streams == 4
    hub.admit("key-new")
    with pytest.raises(StreamLimitReached):
        hub.admit("key-other")


async def test_many_streams_of_one_campaign_share_one_poll_per_interval_and_all_see_the_end() -> None:
    campaign = ScriptedCampaign("running", "running", "running", "running", "completed")
    hub = ProgressHub(campaign, limits())
    streams = await asyncio.gather(*(collect(hub) for _ in range(50)))
    assert campaign.polls == 5
    assert hub.polls == 5
    for seen in streams:
        assert seen[-1].state == "completed"
        assert [item.counts["sent"] for item in seen] == sorted(item.counts["sent"] for item in seen)


async def test_a_draft_campaigns_stream_sends_its_progress_once_and_ends() -> None:
    campaign = ScriptedCampaign("draft")
    hub = ProgressHub(campaign, limits(interval_s=0.001, idle_interval_s=0.001))
    seen = await asyncio.wait_for(collect(hub), timeout=5)
    assert [item.state for item in seen] == ["draft"]
    await asyncio.sleep(0.05)
    assert campaign.polls == 1


async def test_a_paused_campaign_is_polled_at_the_idle_pace_not_the_running_one() -> None:
    campaign = ScriptedCampaign("paused")
    hub = ProgressHub(campaign, limits(interval_s=0.001, idle_interval_s=60.0, max_lifetime_s=0.3))
    seen = await asyncio.wait_for(collect(hub), timeout=5)
    assert [item.state for item in seen] == ["paused"]
    assert campaign.polls == 1


async def test_a_stream_ends_at_its_maximum_lifetime_and_its_campaign_stops_being_polled() -> None:
    campaign = ScriptedCampaign("running")
    hub = ProgressHub(campaign, limits(interval_s=0.01, max_lifetime_s=0.2))
    seen = await asyncio.wait_for(collect(hub), timeout=5)
    assert seen and all(item.state == "running" for item in seen)
    polls_at_end = campaign.polls
    await asyncio.sleep(0.1)
    assert campaign.polls == polls_at_end


async def test_a_failing_poll_ends_the_streams_instead_of_leaving_them_waiting() -> None:
    async def broken(tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> Progress | None:
        raise ConnectionError("database gone")

    hub = ProgressHub(broken, limits())
    assert await asyncio.wait_for(collect(hub), timeout=5) == []
