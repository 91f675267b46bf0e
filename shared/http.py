"""What every service's HTTP side shares: authentication, probes, metrics, and error bodies.

A tenant is identified by its API key (``Authorization: Bearer <key>`` or ``X-API-Key``);
anything of another tenant answers 404, never 403, so ids of other tenants leak nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.abuse_limits import AbuseLimits, LimitExceeded, Limits
from shared.apikeys import display_prefix, hash_api_key
from shared.body_limit import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_BULK_BODY_BYTES,
    BodyLimit,
    BodyTooLarge,
    PathTest,
    body_too_large,
)
from shared.db import AllTenants
from shared.logging import get_logger
from shared.metrics import AUTH_FAILURES, RATE_LIMITED
from shared.openapi import install_openapi
from shared.operator_token import OperatorTokenDigest
from shared.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True)
class TenantContext:
    tenant_id: UUID
    timezone: str
    default_region: str
    # The key the request authenticated with (audit entries name it by its prefix).
    api_key_id: int
    api_key_prefix: str


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(get_pool)]


def _bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _authentication_failed(request: Request, surface: str, presented: str | None) -> None:
    """Counted and logged, never with the secret: an API key's public prefix (the part a tenant sees
    in its key list) or, for the operator token, a short digest that tells repeated attempts apart
    without revealing any character of a token that may be a near-miss of the real one."""
    AUTH_FAILURES.labels(surface=surface).inc()
    if not presented:
        shown: dict[str, str | None] = {"credential": None}
    elif surface == "operator_api":
        shown = {"token_digest": hashlib.sha256(presented.encode()).hexdigest()[:12]}
    else:
        shown = {"key_prefix": display_prefix(presented)}
    log.warning(
        "authentication failed",
        surface=surface,
        client=_client_address(request),
        route=request.url.path,
        **shown,
    )


# A key is valid until revoked or expired, and only for an active tenant. Its last use is
# written at most once a minute, so a busy key costs no write per request.
AUTHENTICATE = """
WITH k AS (
    SELECT k.id AS key_id, k.prefix, t.id, t.timezone, t.default_region
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
      AND t.active
), used AS (
    INSERT INTO api_key_last_use (key_id, used_at) SELECT key_id, now() FROM k
    ON CONFLICT (key_id) DO UPDATE SET used_at = excluded.used_at
    WHERE api_key_last_use.used_at < now() - interval '1 minute'
)
SELECT * FROM k
"""


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def install_abuse_limits(app: FastAPI, pool: asyncpg.Pool, settings: Settings) -> None:
    """Rate limits and lockouts of the tenant and operator APIs, shared through the database."""
    common = {
        "window_s": settings.rate_limit_window_s,
        "lockout_base_s": settings.auth_lockout_base_s,
        "lockout_max_s": settings.auth_lockout_max_s,
        "failure_memory_s": settings.auth_failure_memory_s,
    }
    app.state.abuse_limits = {
        "tenant_api": AbuseLimits(
            pool,
            "tenant_api",
            Limits(
                per_key=settings.tenant_api_requests_per_key,
                per_address=settings.tenant_api_requests_per_address,
                failures_allowed=settings.tenant_api_failures_allowed,
                **common,  # type: ignore[arg-type]
            ),
        ),
        "operator_api": AbuseLimits(
            pool,
            "operator_api",
            Limits(
                per_key=settings.operator_api_requests_per_address,
                per_address=settings.operator_api_requests_per_address,
                failures_allowed=settings.operator_api_failures_allowed,
                **common,  # type: ignore[arg-type]
            ),
        ),
    }


def _limits(request: Request, surface: str) -> AbuseLimits | None:
    installed: dict[str, AbuseLimits] | None = getattr(request.app.state, "abuse_limits", None)
    return installed[surface] if installed else None


async def _within_limits(request: Request, limits: AbuseLimits | None, key_hash: str | None) -> None:
    if limits is None:
        return
    try:
        await limits.check(_client_address(request), key_hash)
    except LimitExceeded as exc:
        RATE_LIMITED.labels(surface=limits.surface).inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed attempts; retry later" if exc.reason == "locked_out" else "rate limit exceeded",
            {"Retry-After": str(exc.retry_after_s)},
        ) from None


async def current_tenant(
    request: Request,
    pool: Pool,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> TenantContext:
    key = _bearer(authorization, x_api_key)
    key_hash = hash_api_key(key) if key else None
    limits = _limits(request, "tenant_api")
    await _within_limits(request, limits, key_hash)
    if not key:
        _authentication_failed(request, "tenant_api", None)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key", {"WWW-Authenticate": "Bearer"})
    # The key names its tenant: finding it spans tenants (the cross-tenant role).
    row = await AllTenants(pool).fetchrow(AUTHENTICATE, key_hash)
    if row is None:
        _authentication_failed(request, "tenant_api", key)
        if limits is not None:
            await limits.failed(_client_address(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", {"WWW-Authenticate": "Bearer"})
    return TenantContext(
        tenant_id=row["id"],
        timezone=row["timezone"],
        default_region=row["default_region"],
        api_key_id=row["key_id"],
        api_key_prefix=row["prefix"],
    )


Tenant = Annotated[TenantContext, Depends(current_tenant)]


async def require_operator(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The operator's identity for the audit log: one credential, told apart by client address."""
    token = _bearer(authorization, None)
    limits = _limits(request, "operator_api")
    # A locked-out address is refused before its token is even compared.
    await _within_limits(request, limits, None)
    expected: OperatorTokenDigest = request.app.state.settings.operator_token
    if not expected.matches(token):
        _authentication_failed(request, "operator_api", token)
        if limits is not None:
            await limits.failed(_client_address(request))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "operator token required", {"WWW-Authenticate": "Bearer"}
        )
    if limits is not None:
        await limits.succeeded(_client_address(request))
    return f"operator@{_client_address(request)}"


Operator = Annotated[str, Depends(require_operator)]


def not_found(what: str = "not found") -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, what)


def _is_union_tag(part: Any) -> bool:
    """A union of models adds the member's class name ("BodyTemplate") or a validator's tag
    ("function-after[...]") to an error's location: neither is a name of the API."""
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _field_path(loc: tuple[Any, ...]) -> str:
    # The first element says where the field came from (body, query, path); the rest is its path,
    # which may itself contain a field called "body" (a template's body).
    parts = [str(part) for part in loc if not _is_union_tag(part)]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _closest_union_members(errors: Sequence[Any]) -> list[Any]:
    """Of the errors each member of a union reported, those of the member that came closest (the
    fewest errors): a body with a bad ``body`` is not also told it lacks a ``content_sid``."""
    members: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for err in errors:
        loc = tuple(err.get("loc", ()))
        for index, part in enumerate(loc):
            if _is_union_tag(part):
                members[loc[:index]][part] += 1
                break
    closest = {prefix: min(counts, key=lambda tag: counts[tag]) for prefix, counts in members.items()}
    kept = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        tag_index = next((i for i, part in enumerate(loc) if _is_union_tag(part)), None)
        if tag_index is None or closest[loc[:tag_index]] == loc[tag_index]:
            kept.append(err)
    return kept


def field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """The API's error items (field, message, type) for pydantic's errors of a request."""
    items = []
    for err in _closest_union_members(errors):
        if err.get("type") == "json_invalid":
            # The location is a character offset into the body, not a field.
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            position = err.get("loc", ("body", None))[-1]
            where = f" at character {position}" if isinstance(position, int) else ""
            items.append(
                {"field": "body", "message": f"not valid JSON{where}: {reason}", "type": "json_invalid"}
            )
            continue
        items.append(
            {
                "field": _field_path(tuple(err.get("loc", ()))),
                "message": err.get("msg", ""),
                "type": err.get("type"),
            }
        )
    return items


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": "invalid request", "errors": field_errors(exc.errors())}, status_code=422)


class InputError(ValueError):
    """Bad input found by a service function (not by the request schema); answered with 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str, **extra: Any) -> InputError:
        return cls([{"field": field, "message": message, **extra}])


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    return JSONResponse({"detail": "invalid request", "errors": exc.errors}, status_code=422)


# A database that does not answer in time (the pool's command timeout, a statement or lock
# timeout, no connection slot left) is a condition to retry, not a bug of the request: 503 with a
# hint of when, and a warning naming the route, instead of a bare 500.
DATABASE_BUSY_RETRY_AFTER_S = 5
DATABASE_BUSY = (
    TimeoutError,
    asyncpg.QueryCanceledError,
    asyncpg.LockNotAvailableError,
    asyncpg.TooManyConnectionsError,
)


async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "database did not answer in time",
        method=request.method,
        path=request.url.path,
        error=type(exc).__name__,
        detail=str(exc) or None,
    )
    return JSONResponse(
        {"detail": "the database is busy; retry shortly"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_BUSY_RETRY_AFTER_S)},
    )


ReadinessCheck = Callable[[], Awaitable[bool]]


def _not_bulk(path: str) -> bool:
    return False


def install_common(
    app: FastAPI,
    readiness: dict[str, ReadinessCheck],
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_bulk_body_bytes: int = DEFAULT_MAX_BULK_BODY_BYTES,
    is_bulk: PathTest = _not_bulk,
) -> None:
    """Error bodies that name the field, a request-body limit (larger on the bulk routes),
    liveness/readiness probes and /metrics."""
    install_openapi(app, tenant_auth=current_tenant, operator_auth=require_operator)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(BodyTooLarge, body_too_large)
    for busy in DATABASE_BUSY:
        app.add_exception_handler(busy, _database_busy)
    app.add_middleware(
        BodyLimit, max_bytes=max_body_bytes, max_bulk_bytes=max_bulk_body_bytes, is_bulk=is_bulk
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results: dict[str, bool] = {}
        for name, check in readiness.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def pool_check(app: FastAPI) -> ReadinessCheck:
    async def check() -> bool:
        pool: asyncpg.Pool | None = getattr(app.state, "pool", None)
        if pool is None:
            return False
        return bool(await pool.fetchval("SELECT 1", timeout=2))

    return check


def broker_check(app: FastAPI) -> ReadinessCheck:
    async def check() -> bool:
        connection = getattr(app.state, "broker", None)
        # A robust connection is not "closed" while it reconnects; ``connected`` tells the truth.
        return connection is not None and connection.connected.is_set()

    return check
