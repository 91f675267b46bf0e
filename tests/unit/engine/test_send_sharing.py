"""A sender's calls shared across tenants, and a chunk's slots handed to messages that come late."""

from __future__ import annotations

import asyncio

from services.sender.sharing import CallSlots, SlotBook


async def test_a_freed_call_goes_to_the_waiting_tenant_with_the_fewest_calls_in_flight() -> None:
    # Given a sender with 4 calls, all held by a tenant with a backlog, and both tenants waiting
    calls = CallSlots(4)
    for _ in range(4):
        await calls.acquire("big", timed=False)
    big_waits = [asyncio.create_task(calls.acquire("big", timed=False)) for _ in range(100)]
    await asyncio.sleep(0)
    small_waits = [asyncio.create_task(calls.acquire("small", timed=False)) for _ in range(2)]
    await asyncio.sleep(0)

    # When two calls are freed
    calls.release("big")
    calls.release("big")
    await asyncio.sleep(0)

    # Then both go to the small tenant, whose requests came after the big tenant's hundred
    assert all(task.done() for task in small_waits)
    assert not any(task.done() for task in big_waits)
    assert calls.in_flight("small") == 2 and calls.in_flight("big") == 2
    for task in big_waits:
        task.cancel()
    await asyncio.gather(*big_waits, return_exceptions=True)
    assert calls.waiting == 0


async def test_a_message_with_a_slot_gets_the_next_call_before_any_unslotted_one() -> None:
    calls = CallSlots(1)
    await calls.acquire("unlimited", timed=False)
    unslotted = asyncio.create_task(calls.acquire("unlimited", timed=False))
    await asyncio.sleep(0)
    slotted = asyncio.create_task(calls.acquire("limited", timed=True))
    await asyncio.sleep(0)

    calls.release("unlimited")
    await asyncio.sleep(0)

    assert slotted.done() and not unslotted.done()
    calls.release("limited")
    await asyncio.sleep(0)
    assert unslotted.done()


async def test_messages_without_a_slot_never_take_the_calls_reserved_for_messages_with_one() -> None:
    # Given a sender with 4 calls, one reserved for messages with a slot, and an unlimited
    # tenant's backlog taking every call it may
    calls = CallSlots(4, reserved=1)
    for _ in range(3):
        await calls.acquire("unlimited", timed=False)
    backlog = asyncio.create_task(calls.acquire("unlimited", timed=False))
    await asyncio.sleep(0)
    assert not backlog.done()

    # When a rate-limited tenant's message comes to its slot
    slotted = asyncio.create_task(calls.acquire("limited", timed=True))
    await asyncio.sleep(0)

    # Then it has a call at once, and when it ends the backlog still waits for one of its own
    assert slotted.done() and calls.in_flight("limited") == 1
    calls.release("limited")
    await asyncio.sleep(0)
    assert not backlog.done()
    calls.release("unlimited")
    await asyncio.sleep(0)
    assert backlog.done() and calls.in_flight("unlimited") == 3


async def test_a_cancelled_waiter_leaves_no_call_taken() -> None:
    calls = CallSlots(1)
    await calls.acquire("a", timed=False)
    waiter = asyncio.create_task(calls.acquire("b", timed=True))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    calls.release("a")
    await calls.acquire("c", timed=False)
    assert calls.in_flight("c") == 1 and calls.in_flight("b") == 0


def test_messages_on_time_take_their_own_slots_in_order() -> None:
    book = SlotBook(first=100.0, interval=0.1, count=3, tolerance=0.008)
    assert [book.take(100.0), book.take(100.1), book.take(100.2)] == [100.0, 100.1, 100.2]
    assert book.take(100.3) is None and book.lost == 0


def test_a_late_message_takes_the_next_slot_that_has_not_passed_and_only_passed_slots_are_lost() -> None:
    # Given a chunk of 5 slots 0.1 s apart, and its sender 0.25 s late
    book = SlotBook(first=100.0, interval=0.1, count=5, tolerance=0.008)

    # When its messages take slots at 100.25
    taken = [book.take(100.25) for _ in range(4)]

    # Then the three slots that passed are lost and the messages take the two left, in order
    assert taken == [100.3, 100.4, None, None]
    assert book.lost == 3


def test_a_message_within_the_tolerance_keeps_its_slot() -> None:
    book = SlotBook(first=100.0, interval=0.1, count=2, tolerance=0.008)
    assert book.take(100.007) == 100.0
    assert book.usable(100.0, 100.008) and not book.usable(100.0, 100.009)


def test_no_second_holds_more_sends_than_slots_however_late_the_messages_come() -> None:
    # Given 80/s slots and messages that come late by varying amounts, each sent when it takes a slot
    interval = 1.015 / 80
    book = SlotBook(first=0.0, interval=interval, count=400, tolerance=0.008)
    sends = []
    now = 0.0
    for i in range(400):
        now = max(now, i * interval) + (0.05 if i % 37 == 0 else 0.0)
        slot = book.take(now)
        if slot is None:
            break
        start = max(now, slot)
        assert start - slot <= 0.008
        sends.append(start)
        now = start

    # Then no one-second window holds more than 80
    sends.sort()
    busiest = max(sum(1 for t in sends if a <= t < a + 1) for a in sends)
    assert busiest <= 80
