"""The shared input types: text PostgreSQL can store, integers and datetimes that fit their
columns, JSON jsonb accepts, and the request-body limit every service installs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError

from shared.body_limit import bulk_paths
from shared.http import install_common
from shared.validation import INT4_MAX, INT8_MAX, Int4, Int8, JsonObject, Text, Timestamp


class Sample(BaseModel):
    name: Annotated[str, Text(20)] = "x"
    note: Annotated[str, Text(5)] | None = None
    tags: list[Annotated[str, Text(5)]] = Field(default_factory=list)
    count: Int4 = 0
    big: Int8 = 0
    at: Timestamp | None = None
    data: JsonObject = Field(default_factory=dict)


def refused_field(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Sample(**values)  # type: ignore[arg-type]
    return ".".join(str(part) for part in caught.value.errors()[0]["loc"])


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "caf\u00e9\x00", "a\ud800b", "\udfff"])
def test_text_that_postgresql_cannot_store_is_refused(text: str) -> None:
    assert refused_field(name=text) == "name"


@pytest.mark.parametrize("text", ["", "Zoë 👋", "tab\tand\nnewline", "\u2028 line separator"])
def test_ordinary_unicode_text_is_kept_as_given(text: str) -> None:
    assert Sample(name=text).name == text


def test_text_past_its_maximum_length_is_refused_in_characters_also_when_optional_or_listed() -> None:
    assert refused_field(name="x" * 21) == "name"
    assert refused_field(note="x" * 6) == "note"
    assert refused_field(tags=["ok", "x" * 6]) == "tags.1"
    with pytest.raises(ValidationError, match="at most 5 characters"):
        Sample(note="x" * 6)


def test_text_in_optional_and_listed_fields_is_checked_for_characters_too() -> None:
    assert refused_field(note="a\x00") == "note"
    assert refused_field(tags=["a\x00"]) == "tags.0"


@pytest.mark.parametrize(
    ("field", "value"), [("count", INT4_MAX + 1), ("count", -(2**31) - 1), ("big", INT8_MAX + 1)]
)
def test_integers_past_their_column_type_are_refused(field: str, value: int) -> None:
    assert refused_field(**{field: value}) == field


def test_integers_at_their_column_bounds_are_accepted() -> None:
    assert Sample(count=INT4_MAX, big=INT8_MAX).big == INT8_MAX


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+05:00",
        "0001-01-01T10:00:00Z",
        "9999-12-31T23:00:00-05:00",
        "9999-12-31T00:00:00Z",
    ],
)
def test_datetimes_at_the_edge_of_the_calendar_are_refused(moment: str) -> None:
    assert refused_field(at=moment) == "at"


def test_naive_datetimes_are_refused() -> None:
    assert refused_field(at="2030-01-01T10:00:00") == "at"


def test_ordinary_datetimes_are_accepted() -> None:
    assert Sample(at="2030-01-01T10:00:00+02:00").at == datetime(2030, 1, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        {"k": "a\x00"},
        {"a\x00": "k"},
        {"k": ["ok", {"deep": "\ud800"}]},
        {"k": float("nan")},
        {"k": float("inf")},
        {"k": 2**64},
        {"k": [[[[[[[[[["too deep"]]]]]]]]]]},
    ],
)
def test_json_objects_jsonb_would_refuse_are_refused(data: dict[str, object]) -> None:
    assert refused_field(data=data) == "data"


def test_ordinary_json_objects_are_accepted() -> None:
    data = {"k": ["a", 1, 2.5, None, True, {"x": "y"}]}
    assert Sample(data=data).data == data


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_common(
        app, {}, max_body_bytes=200, max_bulk_body_bytes=2000, is_bulk=bulk_paths(suffixes=(":upsert",))
    )

    @app.post("/things")
    async def things(body: Sample) -> dict[str, bool]:
        return {"ok": True}

    @app.post("/things:upsert")
    async def upsert(body: Sample) -> dict[str, bool]:
        return {"ok": True}

    with TestClient(app) as test_client:
        yield test_client


def test_a_body_declared_past_the_limit_is_refused_with_413_naming_the_body(client: TestClient) -> None:
    response = client.post("/things", json={"data": {"k": "x" * 300}})
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"


def test_a_streamed_body_past_the_limit_is_refused_with_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"data": {"k": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}}'

    response = client.post("/things", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["errors"][0]["field"] == "body"


def test_bulk_routes_take_the_larger_limit(client: TestClient) -> None:
    body = {"data": {"k": "x" * 300}}
    assert client.post("/things:upsert", json=body).status_code == 200
    assert client.post("/things:upsert", json={"data": {"k": "x" * 3000}}).status_code == 413


def test_a_body_within_the_limit_is_served(client: TestClient) -> None:
    assert client.post("/things", json={"name": "ok"}).json() == {"ok": True}


def test_broker_events_are_guarded_by_the_same_types() -> None:
    from uuid import uuid4

    from shared.events import (
        BookingAppointmentUpserted,
        BookingCustomerUpserted,
        CampaignRequested,
        RecipientBatch,
    )

    tenant = uuid4()
    with pytest.raises(ValidationError, match="first_name"):
        BookingCustomerUpserted(tenant_id=tenant, external_id="c1", first_name="a\x00")
    with pytest.raises(ValidationError, match="starts_at"):
        BookingAppointmentUpserted.model_validate(
            {
                "tenant_id": str(tenant),
                "external_id": "a1",
                "customer_id": "c1",
                "starts_at": "0001-01-01T00:00:00+01:00",
                "created_at": "2030-01-01T00:00:00Z",
                "status": "approved",
            }
        )
    with pytest.raises(ValidationError, match="template"):
        CampaignRequested.model_validate_json(
            b'{"tenant_id": "%s", "idempotency_key": "k", "name": "n", "template": {"body": NaN}}'
            % str(tenant).encode()
        )
    with pytest.raises(ValidationError, match="recipient_ids"):
        RecipientBatch(tenant_id=tenant, campaign_id=uuid4(), recipient_ids=[2**63])


def test_a_body_is_refused_when_its_shortcodes_could_take_it_past_whatsapps_limit() -> None:
    from shared.templating import body_length_errors, longest_body

    assert longest_body("Hi {customer_first_name}!") == len("Hi !") + 200
    assert body_length_errors({"body": "x" * 1399 + "{customer_first_name}"}) == []
    assert body_length_errors({"body": "x" * 1401 + "{customer_first_name}"})[0]["field"] == "template.body"
    assert body_length_errors({"content_sid": "HX" + "0" * 32}) == []


def test_a_rendered_message_past_the_limits_is_named() -> None:
    from shared.templating import RenderedMessage, rendered_length_errors

    assert rendered_length_errors(RenderedMessage(body="x" * 1600), "f") == []
    assert rendered_length_errors(RenderedMessage(body="x" * 1601), "f")[0]["field"] == "f"
    assert rendered_length_errors(RenderedMessage(content_sid="HX", content_variables={"1": "x" * 1025}), "f")
