"""Async client for the simulator's admin API, for tests, demos and benchmarks.

async with SimulatorAdmin("http://127.0.0.1:8010") as sim:
    await sim.wait_ready()
    await sim.register_account("AC...", "token", rate_limit_mps=50)
    await sim.set_faults({"p_429": 0.1}, account_sid="AC...")
    stats = await sim.stats("AC...")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx


class SimulatorAdminError(RuntimeError):
    """The simulator rejected an admin call; the message carries its explanation."""


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise SimulatorAdminError(f"{response.request.url.path} -> {response.status_code}: {response.text}")
    result: dict[str, Any] = response.json()
    return result


class SimulatorAdmin:
    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def __aenter__(self) -> SimulatorAdmin:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Poll ``/healthz`` until the simulator answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if (await self._http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)

    async def register_account(
        self,
        account_sid: str,
        auth_token: str,
        *,
        rate_limit_mps: int | None = None,
        inbound_url: str | None = None,
    ) -> dict[str, Any]:
        return await self._post(
            "/admin/accounts",
            {
                "account_sid": account_sid,
                "auth_token": auth_token,
                "rate_limit_mps": rate_limit_mps,
                "inbound_url": inbound_url,
            },
        )

    async def set_faults(
        self, faults: Mapping[str, Any] | None = None, *, account_sid: str | None = None, **knobs: Any
    ) -> dict[str, Any]:
        """JSON-merge fault knobs, globally or for one account; ``None`` removes a knob."""
        body: dict[str, Any] = {**(faults or {}), **knobs}
        if account_sid is not None:
            body["account_sid"] = account_sid
        return await self._post("/admin/faults", body)

    async def faults(self, account_sid: str | None = None) -> dict[str, Any]:
        params = {"account_sid": account_sid} if account_sid else {}
        return await self._get("/admin/faults", params)

    async def reset(self, *, accounts: bool = False, faults: bool = False) -> None:
        await self._post("/admin/reset", {"accounts": accounts, "faults": faults})

    async def stats(
        self,
        account_sid: str | None = None,
        *,
        include_requests: bool = False,
        to_in: Iterable[str] | None = None,
        body_contains: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, str] = {}
        if account_sid:
            params["account_sid"] = account_sid
        if include_requests:
            params["include"] = "requests"
        if to_in is not None:
            params["to_in"] = ",".join(to_in)
        if body_contains is not None:
            params["body_contains"] = body_contains
        return await self._get("/admin/stats", params)

    async def wait_callbacks_settled(
        self, account_sid: str | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Poll stats until no status callback is scheduled or in flight; returns the stats."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = await self.stats(account_sid)
            if stats["callbacks_pending"] == 0:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stats['callbacks_pending']} callbacks still pending")
            await asyncio.sleep(0.02)

    async def inbound(
        self,
        account_sid: str,
        from_: str,
        to: str,
        body: str,
        *,
        url: str | None = None,
        profile_name: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Have the simulator POST a signed inbound-message webhook.

        Returns ``{"message_sid", "status", "body"}``, with ``status`` None and an
        ``error`` when the webhook could not be reached.
        """
        payload: dict[str, Any] = {"account_sid": account_sid, "from": from_, "to": to, "body": body}
        if url is not None:
            payload["url"] = url
        if profile_name is not None:
            payload["profile_name"] = profile_name
        if extra:
            payload["extra"] = dict(extra)
        response = await self._http.post("/admin/inbound", json=payload)
        if response.status_code == 502:
            result: dict[str, Any] = response.json()
            return result
        return _checked(response)

    async def add_templates(
        self, account_sid: str, templates: list[Mapping[str, Any]], *, replace: bool = False
    ) -> dict[str, Any]:
        return await self._post(
            "/admin/templates",
            {"account_sid": account_sid, "templates": [dict(t) for t in templates], "replace": replace},
        )

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return _checked(await self._http.post(path, json=dict(body)))

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        return _checked(await self._http.get(path, params=dict(params)))
