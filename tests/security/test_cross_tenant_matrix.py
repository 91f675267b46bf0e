"""The cross-tenant matrix over every route of the running services: tenant B sees tenant A's
objects exactly as it sees objects that do not exist (404 on every read, nothing changed by any
write); no list B reads holds anything of A's, and one that takes A's ids answers as it does for
ids that do not exist; every tenant route refuses a request without a key; every operator route
refuses a tenant key. The routes come from the services' own OpenAPI documents, so a new route is
covered the day it is added."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import TenantHandle, import_customers, new_tenant
from tests.integration.tracker.helpers import eventually
from tests.support import Stack

Route = tuple[str, str, str]  # base URL, method, path template
Parameters = dict[tuple[str, str], list[str]]  # (method, path) → its required query parameters


async def _routes(stack: Stack) -> tuple[list[Route], Parameters]:
    routes, required = [], {}
    async with httpx.AsyncClient(timeout=30) as client:
        for base in (stack.api_url, stack.tracker_url):
            spec = (await client.get(f"{base}/openapi.json")).json()
            for path, operations in spec["paths"].items():
                for method, operation in operations.items():
                    routes.append((base, method.upper(), path))
                    required[(method.upper(), path)] = [
                        p["name"]
                        for p in operation.get("parameters", [])
                        if p["in"] == "query" and p.get("required")
                    ]
    return routes, required


async def _a_with_objects(stack: Stack) -> tuple[TenantHandle, dict[str, str]]:
    """Tenant A with a campaign that sent to its customers, a suppression, a second key, a
    webhook endpoint with a delivery (of the campaign's start), a service and a location."""
    tenant = await new_tenant(stack)
    await import_customers(
        stack,
        tenant,
        [{"external_id": f"m{i}", "first_name": "Ann", "phone": f"+1415777{i:04d}"} for i in range(3)],
    )
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, headers=tenant.headers) as api:
        for what in ("services", "locations"):
            row = {"external_id": f"{what}-{tenant.id}", "name": f"matrix {what} of {tenant.id}"}
            answer = await api.post(f"/v1/booking/{what}:upsert", json={"rows": [row]})
            assert answer.status_code == 200, answer.text
        endpoint = (
            await api.post(
                "/v1/webhooks/endpoints",
                json={"url": "http://127.0.0.1:9/matrix", "event_types": ["campaign.started"]},
            )
        ).json()["endpoint"]
        campaign = (
            await api.post(
                "/v1/campaigns", json={"name": "matrix", "template": {"body": "Hi"}, "start": True}
            )
        ).json()
        assert (await api.post("/v1/suppressions", json={"phone": "+14157779999"})).status_code in (200, 201)
        key = (await api.post("/v1/tenant/api-keys", json={"name": "matrix"})).json()["key"]
    async with httpx.AsyncClient(base_url=stack.tracker_url, timeout=30, headers=tenant.headers) as reads:

        async def recipients() -> list[dict[str, Any]]:
            page = (await reads.get(f"/v1/campaigns/{campaign['id']}/recipients")).json()
            return list(page.get("items", []))

        recipient = (await eventually(recipients, timeout_s=60.0, every_s=0.2))[0]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, headers=tenant.headers) as api:

        async def deliveries() -> list[dict[str, Any]]:
            return list((await api.get("/v1/webhooks/deliveries")).json()["items"])

        delivery = (await eventually(deliveries, timeout_s=60.0, every_s=0.2))[0]
    return tenant, {
        "delivery_id": str(delivery["id"]),
        "endpoint_id": endpoint["id"],
        "campaign_id": campaign["id"],
        "key_id": str(key["id"]),
        "phone": "+14157779999",
        "recipient_id": str(recipient["id"]),
    }


NONEXISTENT = {
    "delivery_id": "987654321",
    "endpoint_id": str(uuid.uuid4()),
    "campaign_id": str(uuid.uuid4()),
    "key_id": "987654321",
    "phone": "+14157778888",
    "recipient_id": "987654321",
}


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


async def _call(client: httpx.AsyncClient, method: str, url: str) -> httpx.Response:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    if url.endswith("/progress/stream"):
        # A stream answers its status at once; the body is not needed.
        async with client.stream(method, url) as streamed:
            return httpx.Response(streamed.status_code)
    return await client.request(method, url, json=body)


@pytest.fixture(scope="module")
def described(stack: Stack) -> tuple[list[Route], Parameters]:
    return asyncio.run(_routes(stack))


@pytest.fixture(scope="module")
def routes(described: tuple[list[Route], Parameters]) -> list[Route]:
    return described[0]


# The query parameters that name objects, as A's objects and as nothing.
QUERY_OBJECTS = {"ids": "campaign_id"}


async def test_no_list_holds_another_tenants_objects(
    stack: Stack, described: tuple[list[Route], Parameters]
) -> None:
    # Given tenant A with a campaign, recipients, a suppression, keys, a webhook endpoint, a
    # service and a location, and tenant B
    routes, required = described
    a, objects = await _a_with_objects(stack)
    b = await new_tenant(stack)
    lists = [r for r in routes if r[1] == "GET" and "{" not in r[2] and not r[2].startswith("/v1/operator")]
    assert {"/v1/campaigns", "/v1/campaigns/progress", "/v1/services", "/v1/locations"} <= {
        p for *_, p in lists
    }
    for _, method, path in lists:
        assert set(required[(method, path)]) <= set(QUERY_OBJECTS), f"{path}: give A an object for it"
    # What only A's data holds (B's own answers hold B's ids, never these).
    markers = [str(a.id), objects["campaign_id"], objects["endpoint_id"], "+14157770000", f"services-{a.id}"]
    markers.append(f"matrix locations of {a.id}")

    # When B reads every list, naming A's objects where the list takes ids, and naming nothing
    async with httpx.AsyncClient(timeout=30, headers=b.headers) as client:
        for base, method, path in lists:
            names = required[(method, path)]
            given = {name: objects[QUERY_OBJECTS[name]] for name in names}
            for_a = await client.get(base + path, params=given)
            # Then the list holds nothing of A's but what B named itself
            assert for_a.status_code == 200 or path == "/v1/templates", (path, for_a.status_code)
            leaked = [m for m in markers if m in for_a.text and m not in given.values()]
            assert not leaked, (path, leaked)
            if names:
                # And naming A's objects answers as naming objects that do not exist
                nothing = {name: NONEXISTENT[QUERY_OBJECTS[name]] for name in names}
                for_nothing = await client.get(base + path, params=nothing)
                assert for_a.status_code == for_nothing.status_code, path
                blank_a, blank_nothing = for_a.text, for_nothing.text
                for name in names:
                    blank_a = blank_a.replace(given[name], "?")
                    blank_nothing = blank_nothing.replace(nothing[name], "?")
                assert blank_a == blank_nothing, path


async def test_another_tenants_objects_look_exactly_like_missing_ones(
    stack: Stack, routes: list[Route]
) -> None:
    # Given tenant A with a campaign, recipients, a suppression and keys, and tenant B
    a, objects = await _a_with_objects(stack)
    b = await new_tenant(stack)
    tenant_routes = [r for r in routes if "{" in r[2] and not r[2].startswith("/v1/operator")]
    assert {"campaign_id", "delivery_id", "endpoint_id", "key_id", "phone", "recipient_id"} == {
        name for _, _, path in tenant_routes for name in re.findall(r"\{(\w+)\}", path)
    }, "a new path parameter: give A an object for it"

    # When B calls every route naming one of A's objects, and the same route naming nothing
    mismatches = []
    async with httpx.AsyncClient(timeout=30, headers=b.headers) as client:
        for base, method, path in tenant_routes:
            for_a = await _call(client, method, base + _fill(path, objects))
            for_nothing = await _call(client, method, base + _fill(path, NONEXISTENT))
            if for_a.status_code != for_nothing.status_code or for_a.status_code in (200, 201, 204, 403):
                mismatches.append((method, path, for_a.status_code, for_nothing.status_code))
            if method == "GET":
                assert for_a.status_code == 404, (method, path, for_a.status_code)

    # Then every answer is the one a missing object gets
    assert not mismatches

    # And A's objects are as they were
    async with httpx.AsyncClient(timeout=30, headers=a.headers) as client:
        campaign = (await client.get(f"{stack.api_url}/v1/campaigns/{objects['campaign_id']}")).json()
        assert campaign["state"] not in ("paused", "cancelled")
        keys = (await client.get(f"{stack.api_url}/v1/tenant/api-keys")).json()
        assert objects["key_id"] in {str(key["id"]) for key in keys}
        suppressed = await client.get(f"{stack.api_url}/v1/suppressions/{objects['phone']}")
        assert suppressed.status_code == 200
        endpoint = (
            await client.get(f"{stack.api_url}/v1/webhooks/endpoints/{objects['endpoint_id']}")
        ).json()
        assert endpoint["url"] == "http://127.0.0.1:9/matrix"


async def test_every_tenant_route_refuses_a_request_without_a_key(stack: Stack, routes: list[Route]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        answers = {
            (method, path): (await _call(client, method, base + _fill(path, NONEXISTENT))).status_code
            for base, method, path in routes
            if not path.startswith("/v1/operator")
        }
    assert answers and all(code == 401 for code in answers.values()), answers


async def test_every_operator_route_refuses_a_tenant_key(stack: Stack, routes: list[Route]) -> None:
    tenant = await new_tenant(stack)
    values = {"tenant_id": tenant.id, "key_id": "1", "username": "crm", "queue": "wce.segmenter.booking.v2"}
    async with httpx.AsyncClient(timeout=30, headers=tenant.headers) as client:
        answers = {
            (method, path): (await _call(client, method, base + _fill(path, values))).status_code
            for base, method, path in routes
            if path.startswith("/v1/operator")
        }
    assert len(answers) >= 10
    assert all(code == 401 for code in answers.values()), answers
