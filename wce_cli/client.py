"""The tracker's HTTP API as the CLI uses it: progress by SSE (polling when a proxy or an older
server does not stream), recipient logs, and the CSV export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from wce_cli.sse import EventParser

FINAL_STATES = frozenset({"completed", "cancelled", "failed"})
POLL_INTERVAL_S = 1.0
# The server pushes twice a second; a silence this long means the stream is gone.
STREAM_TIMEOUT = httpx.Timeout(10.0, read=30.0)
REQUEST_TIMEOUT = httpx.Timeout(30.0)


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = str(response.json().get("detail", response.text))
    except ValueError:
        detail = response.text
    raise ApiError(response.status_code, detail)


class TrackerClient:
    def __init__(self, api_url: str, api_key: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=REQUEST_TIMEOUT,
        )

    async def __aenter__(self) -> TrackerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def progress(self, campaign_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/v1/campaigns/{campaign_id}/progress")
        raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def follow(self, campaign_id: str, *, stream: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Progress updates until the campaign reaches a final state (the last one yielded)."""
        if stream:
            try:
                async for update in self._stream(campaign_id):
                    yield update
                    if update["state"] in FINAL_STATES:
                        return
            except (httpx.TransportError, httpx.DecodingError):
                pass
        while True:
            update = await self.progress(campaign_id)
            yield update
            if update["state"] in FINAL_STATES:
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
        params = {name: value for name, value in filters.items() if value is not None}
        response = await self._http.get(f"/v1/campaigns/{campaign_id}/recipients", params=params)
        raise_for(response)
        result: dict[str, Any] = response.json()
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
