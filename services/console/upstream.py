"""The engine's public HTTP APIs as the console calls them: the segmenter's tenant and operator
API and the tracker's reads, always with the signed-in person's credential.

Every failure is one error type, ``ApiError``, with the API's status and its message (and the
fields a 422 names), so a page can show what the API said next to the field it concerns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class ApiError(Exception):
    status: int
    detail: str
    # field path (as the API names it) → message, for the 422s
    fields: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = f"the API answered {response.status_code}"
        fields: dict[str, str] = {}
        if isinstance(body, dict):
            detail = str(body.get("detail") or detail)
            for error in body.get("errors") or []:
                if isinstance(error, dict) and "field" in error:
                    fields.setdefault(str(error["field"]), str(error.get("message", "invalid")))
        if fields:
            detail = "; ".join(f"{name}: {message}" for name, message in fields.items())
        return cls(response.status_code, detail, fields)


UNREACHABLE = 503


class Upstream:
    """One keep-alive client per API; ``forwarded_for`` passes the browser's address on, so the
    APIs' abuse limits count per person where the console is one of their trusted proxies."""

    def __init__(self, *, api_url: str, tracker_url: str, timeout_s: float) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.api = httpx.AsyncClient(base_url=api_url, timeout=timeout_s, limits=limits)
        self.tracker = httpx.AsyncClient(base_url=tracker_url, timeout=timeout_s, limits=limits)

    async def close(self) -> None:
        await self.api.aclose()
        await self.tracker.aclose()

    @staticmethod
    def _headers(credential: str, forwarded_for: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {credential}"}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        return headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        credential: str,
        forwarded_for: str | None = None,
        tracker: bool = False,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """The JSON answer (None for 204), or ``ApiError``."""
        client = self.tracker if tracker else self.api
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        try:
            response = await client.request(
                method,
                path,
                json=json,
                params=clean,
                headers=self._headers(credential, forwarded_for),
            )
        except httpx.HTTPError as exc:
            raise ApiError(
                UNREACHABLE, f"the engine's API could not be reached ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        credential: str,
        forwarded_for: str | None = None,
        params: Mapping[str, Any] | None = None,
        read_timeout_s: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed tracker answer (CSV, server-sent events); ``ApiError`` when it is refused.
        ``read_timeout_s`` bounds the wait for each chunk of a long-lived stream."""
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        timeout = self.tracker.timeout
        if read_timeout_s is not None:
            timeout = httpx.Timeout(
                timeout.connect, read=read_timeout_s, write=timeout.write, pool=timeout.pool
            )
        request = self.tracker.build_request(
            "GET", path, params=clean, headers=self._headers(credential, forwarded_for), timeout=timeout
        )
        try:
            response = await self.tracker.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ApiError(
                UNREACHABLE, f"the engine's API could not be reached ({type(exc).__name__})"
            ) from None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise ApiError.from_response(response)
            yield response
        finally:
            await response.aclose()
