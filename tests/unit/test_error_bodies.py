"""422 bodies name fields the way the API does: a JSON syntax error names the body with a readable
message, a union of models never leaks a class name into a path nor the errors of the member
that was not meant, and rates, counts and flags take no strings or booleans for numbers."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from services.segmenter.schemas import CampaignCreate, OperatorTenantUpdate
from shared.http import _validation_error


def app() -> FastAPI:
    application = FastAPI()
    application.add_exception_handler(RequestValidationError, _validation_error)

    @application.post("/campaigns")
    async def create(body: CampaignCreate) -> dict[str, str]:
        return {"ok": "yes"}

    @application.patch("/tenants")
    async def update(body: OperatorTenantUpdate) -> dict[str, str]:
        return {"ok": "yes"}

    return application


async def post(
    path: str, content: bytes | None = None, body: Any = None, method: str = "POST"
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if content is not None:
            return await client.request(
                method, path, content=content, headers={"content-type": "application/json"}
            )
        return await client.request(method, path, json=body)


async def test_a_json_syntax_error_names_the_body_with_a_readable_message() -> None:
    response = await post("/campaigns", content=b'{"name": "x", "template": {"body": "hi"},}')
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("not valid JSON at character ")
    assert error["type"] == "json_invalid"


async def test_union_members_leak_neither_their_names_nor_the_other_members_errors() -> None:
    response = await post("/campaigns", body={"name": "x", "template": {"body": 5}})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [error["field"] for error in errors] == ["template.body"]
    assert not any(part[:1].isupper() for error in errors for part in error["field"].split("."))


async def test_rates_counts_and_flags_refuse_strings_and_booleans() -> None:
    for value in ("80", True, 80.5):
        response = await post("/tenants", body={"rate_per_second": value}, method="PATCH")
        assert response.status_code == 422, value
        assert [e["field"] for e in response.json()["errors"]] == ["rate_per_second"]
    start = await post("/campaigns", body={"name": "x", "template": {"body": "hi"}, "start": "yes"})
    assert [e["field"] for e in start.json()["errors"]] == ["start"]
    days = await post(
        "/campaigns", body={"name": "x", "template": {"body": "hi"}, "audience": {"days": "90"}}
    )
    assert "audience.days" in [e["field"] for e in days.json()["errors"]]
    accepted = await post("/tenants", body={"rate_per_second": 80}, method="PATCH")
    assert accepted.status_code == 200
