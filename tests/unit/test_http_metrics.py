"""Every HTTP request is observed once with its route template, method and status — never its raw
path — including routes served in front of FastAPI and requests that fail."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import Receive, Scope, Send

from shared.http_metrics import RequestMetrics

SERVICE = "unit-test-service"


def count(route: str, method: str, status: str) -> float:
    labels = {"service": SERVICE, "route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("wce_http_request_duration_seconds_count", labels) or 0.0


def build() -> RequestMetrics:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/hooks/"):
            scope["route_template"] = "/hooks/{tenant}"
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await app(scope, receive, send)

    return RequestMetrics(front, SERVICE)


async def test_requests_are_counted_by_route_template_method_and_status() -> None:
    before = {
        "ok": count("/items/{item_id}", "GET", "200"),
        "invalid": count("/items/{item_id}", "GET", "422"),
        "hook": count("/hooks/{tenant}", "POST", "403"),
        "unmatched": count("unmatched", "GET", "404"),
    }
    transport = httpx.ASGITransport(app=build())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/items/1")).status_code == 200
        assert (await client.get("/items/2")).status_code == 200
        assert (await client.get("/items/not-a-number")).status_code == 422
        assert (await client.post("/hooks/tenant-a")).status_code == 403
        assert (await client.get("/nothing/here/123")).status_code == 404

    assert count("/items/{item_id}", "GET", "200") == before["ok"] + 2
    assert count("/items/{item_id}", "GET", "422") == before["invalid"] + 1
    assert count("/hooks/{tenant}", "POST", "403") == before["hook"] + 1
    assert count("unmatched", "GET", "404") == before["unmatched"] + 1
    paths = {
        sample.labels["route"]
        for metric in REGISTRY.collect()
        if metric.name == "wce_http_request_duration_seconds"
        for sample in metric.samples
        if sample.labels.get("service") == SERVICE
    }
    assert not {path for path in paths if any(ch.isdigit() for ch in path) or "tenant-a" in path}


async def test_a_request_the_app_fails_on_counts_as_a_500() -> None:
    before = count("/boom", "GET", "500")
    transport = httpx.ASGITransport(app=build(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert count("/boom", "GET", "500") == before + 1


@pytest.mark.parametrize("method", ["BREW", "PROPFIND"])
async def test_unknown_methods_share_one_label(method: str) -> None:
    before = count("unmatched", "other", "404") + count("unmatched", "other", "405")
    transport = httpx.ASGITransport(app=build())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.request(method, "/x")
    assert count("unmatched", "other", "404") + count("unmatched", "other", "405") == before + 1
