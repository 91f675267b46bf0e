from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.connection_budget import MIGRATION_CONNECTIONS, plan, pool_max
from shared.settings import Settings


def test_the_budget_adds_every_replicas_pool_the_migration_job_and_the_reserve() -> None:
    settings = Settings(db_replicas="sender=3,tracker=2", db_pool_max=10, db_reserved_connections=5)  # type: ignore[arg-type]
    budget = plan(settings, limit=100)
    # segmenter 1×10, tracker 2×10, dispatcher 1×10, sender 3×16 (the sender's floor)
    assert budget.total == 10 + 20 + 10 + 48 + MIGRATION_CONNECTIONS + 5
    assert budget.fits
    assert not plan(settings, limit=budget.total - 1).fits
    assert "sender 3×16" in budget.explain()


def test_the_sender_pool_never_drops_below_its_concurrent_statements() -> None:
    assert pool_max("sender", Settings(db_pool_max=4)) == 16
    assert pool_max("sender", Settings(db_pool_max=30)) == 30
    assert pool_max("tracker", Settings(db_pool_max=4)) == 4


@pytest.mark.parametrize("value", ["sender", "sender=x", "mailer=2"])
def test_replica_counts_that_cannot_be_read_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="WCE_DB_REPLICAS"):
        Settings(db_replicas=value)  # type: ignore[arg-type]


def test_a_pool_minimum_above_its_maximum_is_refused() -> None:
    with pytest.raises(ValidationError, match="WCE_DB_POOL_MIN"):
        Settings(db_pool_min=20, db_pool_max=10)
