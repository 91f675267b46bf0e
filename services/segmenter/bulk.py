"""One bulk request per tenant at a time in this process: a second one meanwhile gets 409 naming
the reason (their row work runs off the event loop, see services/segmenter/workers.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

from fastapi import Depends, HTTPException, status

from shared.http import Tenant

# A tenant's second bulk request is refused for this long (the first usually ends by then).
RETRY_AFTER_S = 2


class TenantBulkGuard:
    """Tenants with a bulk request in progress in this process."""

    def __init__(self) -> None:
        self._busy: set[UUID] = set()

    def in_progress(self, tenant_id: UUID) -> bool:
        return tenant_id in self._busy

    @contextlib.contextmanager
    def hold(self, tenant_id: UUID) -> Iterator[None]:
        if tenant_id in self._busy:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                "another bulk request of this tenant is in progress; send the next when it has finished",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        self._busy.add(tenant_id)
        try:
            yield
        finally:
            self._busy.discard(tenant_id)


GUARD = TenantBulkGuard()


async def _one_bulk_request_per_tenant(tenant: Tenant) -> AsyncIterator[None]:
    with GUARD.hold(tenant.tenant_id):
        yield


ONE_BULK_REQUEST_PER_TENANT = Depends(_one_bulk_request_per_tenant)
