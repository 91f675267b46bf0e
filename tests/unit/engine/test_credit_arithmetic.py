"""Plan/purchased credit arithmetic: month rollover and debit order."""

from __future__ import annotations

from datetime import date

from shared.credits import Rollover, available, rollover, split_debit


def test_plan_credits_are_spent_before_purchased_ones() -> None:
    assert split_debit(plan_balance=3, count=5) == (3, 2)
    assert split_debit(plan_balance=10, count=5) == (5, 0)
    assert split_debit(plan_balance=0, count=2) == (0, 2)


def test_a_new_month_expires_the_plan_balance_and_grants_the_plan() -> None:
    # Given an account last rolled in January with 7 plan credits left
    # When touched on the 3rd of February
    result = rollover(
        current_period=date(2025, 1, 1), plan_balance=7, plan_monthly=100, today=date(2025, 2, 3)
    )
    # Then the 7 expire and 100 are granted for February
    assert result == Rollover(expire=7, grant=100, period_start=date(2025, 2, 1))


def test_within_the_period_nothing_rolls() -> None:
    assert (
        rollover(current_period=date(2025, 2, 1), plan_balance=7, plan_monthly=100, today=date(2025, 2, 28))
        is None
    )


def test_available_credits_exclude_reservations_and_never_go_negative() -> None:
    assert available(plan_balance=5, purchased_balance=5, reserved=3) == 7
    assert available(plan_balance=0, purchased_balance=1, reserved=3) == 0
