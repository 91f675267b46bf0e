"""The OpenAPI document of a service says what the service really does: the error bodies it sends
(422 ``{"detail", "errors": [{"field", "message", "type"}]}``, other errors ``{"detail"}``), the
bearer credential each operation needs (a tenant's API key or the operator token) with the 401 it
answers without one, and the 404 of every operation that takes an id in its path.

FastAPI's own 422 schema (``HTTPValidationError``) describes a body the services never send; it
is replaced everywhere by ``ErrorBody``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

REF_PREFIX = "#/components/schemas/"
TENANT_SCHEME = "tenantApiKey"
OPERATOR_SCHEME = "operatorToken"
SECURITY_SCHEMES = {
    TENANT_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The tenant's API key (also accepted in an X-API-Key header).",
    },
    OPERATOR_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator token (WCE_OPERATOR_TOKEN).",
    },
}


class FieldError(BaseModel):
    field: str = Field(
        description="The field's path in the API's own names (rows.3.phone); body for the body as a whole."
    )
    message: str
    type: str | None = Field(default=None, description="Machine-readable kind of error, when known.")


class ErrorBody(BaseModel):
    """422: the request was understood but some fields are invalid; nothing was changed."""

    detail: str
    errors: list[FieldError]


class ErrorDetail(BaseModel):
    """Any other error."""

    detail: str


def _error_response(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_PREFIX + model.__name__}}},
    }


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (new if key == "$ref" and value == old else _replace_refs(value, old, new))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_replace_refs(item, old, new) for item in node]
    return node


def install_openapi(
    app: FastAPI, *, tenant_auth: Callable[..., Any], operator_auth: Callable[..., Any]
) -> None:
    """Make ``app.openapi()`` describe the error bodies and credentials the service really uses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        _, definitions = models_json_schema(
            [(ErrorBody, "serialization"), (ErrorDetail, "serialization")],
            ref_template=REF_PREFIX + "{model}",
        )
        schemas.update(definitions.get("$defs", {}))
        document = _replace_refs(document, REF_PREFIX + "HTTPValidationError", REF_PREFIX + "ErrorBody")
        schemas = document["components"]["schemas"]
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for response in _responses(document, "422"):
            response["description"] = "Invalid fields, each named; nothing was changed."
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        for route in _api_routes(app):
            calls = set(_calls(route.dependant))
            scheme = (
                OPERATOR_SCHEME if operator_auth in calls else TENANT_SCHEME if tenant_auth in calls else None
            )
            for method in route.methods or ():
                operation = document["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                if scheme is not None:
                    operation["security"] = [{scheme: []}]
                    responses.setdefault(
                        "401", _error_response("Missing or invalid credential.", ErrorDetail)
                    )
                if route.dependant.path_params:
                    responses.setdefault(
                        "404", _error_response("Not found (or another tenant's).", ErrorDetail)
                    )
                if route.dependant.body_params:
                    responses.setdefault("413", _error_response("The body is too large.", ErrorBody))
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes as the document lists them (routes of included routers with their
    prefixes and dependencies)."""
    for context in routing.iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def _responses(document: dict[str, Any], status: str) -> Iterator[dict[str, Any]]:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get(status)
            if isinstance(response, dict):
                yield response
