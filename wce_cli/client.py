"""The engine's HTTP APIs as the CLI uses them: the tenant API (campaigns) and the tracker
(progress by SSE, polling when a proxy or an older server does not stream; recipient logs; the CSV
export)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import httpx
import orjson

from wce_cli.sse import EventParser

FINAL_STATES = frozenset({"completed", "cancelled", "failed"})
# States in which a campaign does not move on its own: following it further would wait forever.
STOPPED_STATES = frozenset({"paused", "draft", "scheduled"})
POLL_INTERVAL_S = 1.0
# The server pushes twice a second; a silence this long means the stream is gone.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=30.0)
REQUEST_TIMEOUT = httpx.Timeout(30.0)


class ApiError(RuntimeError):
    """An answer other than 2xx, with the server's own explanation."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def error_detail(response: httpx.Response) -> str:
    """The server's explanation in one line: the fields a 422 names, else its ``detail``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(
            f"{error.get('field', '?')}: {error.get('message', '')}"
            for error in errors
            if isinstance(error, dict)
        )
    return str(body.get("detail", body))


def raise_for(response: httpx.Response) -> None:
    if not response.is_success:
        raise ApiError(response.status_code, error_detail(response))


class ApiClient:
    """One base URL, one bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: httpx.Timeout = REQUEST_TIMEOUT) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def get_json(self, path: str, **params: Any) -> Any:
        query = {name: value for name, value in params.items() if value is not None}
        response = await self._http.get(path, params=query)
        raise_for(response)
        return response.json()

    async def patch_json(self, path: str, body: dict[str, Any]) -> Any:
        response = await self._http.patch(path, json=body)
        raise_for(response)
        return response.json()

    async def post_json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self._http.post(path, json=body or {})
        raise_for(response)
        return response.json()


class TenantApiClient(ApiClient):
    """The tenant API of the segmenter: campaigns and their lifecycle."""

    async def campaigns(self, *, limit: int, **filters: Any) -> list[dict[str, Any]]:
        """A page of campaigns; ``filters`` are the list's query parameters (state and kind as
        lists, name, created_after, created_before, before and before_id)."""
        result: list[dict[str, Any]] = await self.get_json("/v1/campaigns", limit=limit, **filters)
        return result

    async def schedule(self, campaign_id: str, at: str, timezone: str | None) -> dict[str, Any]:
        body = {"at": at} | ({"timezone": timezone} if timezone else {})
        result: dict[str, Any] = await self.post_json(f"/v1/campaigns/{campaign_id}/schedule", body)
        return result

    async def sending_window(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json("/v1/tenant/sending-window")
        return result

    async def set_sending_window(self, window: dict[str, Any] | None) -> dict[str, Any]:
        path = "/v1/tenant/sending-window"
        response = await (self._http.delete(path) if window is None else self._http.put(path, json=window))
        raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def campaign(self, campaign_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json(f"/v1/campaigns/{campaign_id}")
        return result

    async def act(self, campaign_id: str, action: str, reason: str | None = None) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        result: dict[str, Any] = await self.post_json(f"/v1/campaigns/{campaign_id}/{action}", body)
        return result


class TrackerClient(ApiClient):
    """The tracker: campaign progress, recipient logs and the CSV export."""

    async def progress(self, campaign_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json(f"/v1/campaigns/{campaign_id}/progress")
        return result

    async def follow(self, campaign_id: str, *, stream: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Progress updates until the campaign ends or stops moving (the last one yielded)."""
        if stream:
            try:
                async for update in self._stream(campaign_id):
                    yield update
                    if update["state"] in FINAL_STATES | STOPPED_STATES:
                        return
            except (httpx.TransportError, httpx.DecodingError):
                pass
        while True:
            update = await self.progress(campaign_id)
            yield update
            if update["state"] in FINAL_STATES | STOPPED_STATES:
                return
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _stream(self, campaign_id: str) -> AsyncIterator[dict[str, Any]]:
        url = f"/v1/campaigns/{campaign_id}/progress/stream"
        headers = {"Accept": "text/event-stream"}
        async with self._http.stream("GET", url, headers=headers, timeout=STREAM_TIMEOUT) as response:
            if not response.is_success:
                await response.aread()
                raise_for(response)
            parser = EventParser()
            async for line in response.aiter_lines():
                event = parser.feed(line)
                if event is not None and event.data:
                    yield orjson.loads(event.data)

    async def recipients(self, campaign_id: str, **filters: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.get_json(f"/v1/campaigns/{campaign_id}/recipients", **filters)
        return result

    async def export_csv(self, campaign_id: str, target: Path, *, bom: bool, **filters: Any) -> int:
        """Stream the export into ``target``; return the bytes written."""
        params = {name: value for name, value in filters.items() if value is not None}
        if bom:
            params["bom"] = "1"
        written = 0
        url = f"/v1/campaigns/{campaign_id}/recipients.csv"
        async with self._http.stream("GET", url, params=params, timeout=STREAM_TIMEOUT) as response:
            if not response.is_success:
                await response.aread()
                raise_for(response)
            with target.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
                    written += len(chunk)
        return written
