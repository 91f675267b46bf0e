"""Live progress streams of one tenant beside another tenant's progress reads: 300 SSE streams of
tenant A's running campaign do not move tenant B's ``GET /v1/campaigns/{id}/progress`` p50 by more
than 2×.

Both tenants run a campaign at 10/s for the whole benchmark (so A's streams are polled at the
running pace). Each run measures B twice: alone (A's campaign runs, no stream is open), then
beside A's 300 streams. B reads its own campaign's progress once every 50 ms, one request after
another. The streams are held by a process of their own, so reading their events does not delay
B's requests in this one.

Two configurations, each on a stack of its own:
- ``defaults``: the caps as shipped (20 streams per API key, 200 per tracker); A opens 300 with
  one key and most are refused with 429.
- ``raised``: ``WCE_PROGRESS_STREAMS_PER_KEY`` and ``WCE_PROGRESS_STREAMS_MAX`` raised so all 300
  are open, which shows the fan-out: one database poll per campaign and interval, whatever the
  number of streams.

Reported per run: streams admitted and refused, events they received, B's p50/p99/max alone and
beside the streams, the tracker's database polls per second (``wce_progress_polls_total``) and
CPU seconds in each phase. Medians of ``--runs`` runs (default 3). Target: B's p50 beside the
streams at most 2× its p50 alone. Results go to ``bench/results/progress_streams.json``.

    python -m bench.progress_streams [--streams 300] [--runs 3] [--seconds 15] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event as EventType
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import isolated_stack, latency_summary, new_tenant, seed, start_campaign, write_results
from tools.stack import ROOT, Stack

RESULTS = ROOT / "bench" / "results" / "progress_streams.json"
TARGET_P50_RATIO = 2.0
CAMPAIGN_RATE = 10
READ_INTERVAL_S = 0.05
# Slack for starting, opening the streams and settling between runs, per run.
RUN_OVERHEAD_S = 20
RAISED_CAPS = {"WCE_PROGRESS_STREAMS_PER_KEY": "1000", "WCE_PROGRESS_STREAMS_MAX": "1000"}


async def read_progress(url: str, api_key: str, seconds: float) -> list[float]:
    """B's reads: one every ``READ_INTERVAL_S`` (or right after the last when it took longer)."""
    latencies = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as client:
        ends = time.monotonic() + seconds
        due = time.monotonic()
        while due < ends:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            started = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            due = max(due + READ_INTERVAL_S, time.monotonic())
    return latencies


async def _hold_streams(url: str, api_key: str, count: int, opened: Any, stop: EventType) -> None:
    admitted = refused = events = 0
    failed: list[str] = []
    settled = asyncio.Event()
    pending = [count]

    def resolved() -> None:
        pending[0] -= 1
        if pending[0] == 0:
            settled.set()

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal admitted, refused, events
        try:
            async with client.stream("GET", url) as response:
                if response.status_code == 429:
                    refused += 1
                    resolved()
                    return
                if response.status_code != 200:
                    failed.append(str(response.status_code))
                    resolved()
                    return
                admitted += 1
                resolved()
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        events += 1
        except httpx.HTTPError as exc:
            failed.append(type(exc).__name__)
            resolved()

    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(60, read=None)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(count)]
        # Reported after a minute in any case: a stream still unanswered then counts as neither.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), 60)
        opened.put({"admitted": admitted, "refused": refused, "failed": failed})
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    opened.put({"events": events, "failed_after_opening": failed})


def hold_streams(url: str, api_key: str, count: int, opened: Any, stop: EventType) -> None:
    """In a process of its own: open ``count`` streams at once, report how many were admitted,
    read their events until ``stop``, report how many came."""
    asyncio.run(_hold_streams(url, api_key, count, opened, stop))


async def polls_so_far(stack: Stack) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"{stack.tracker_url}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wce_progress_polls_total":
                return float(sample.value)
    return 0.0


def tracker_cpu_s(stack: Stack) -> float:
    times = psutil.Process(stack.processes["tracker"].pid).cpu_times()
    return float(times.user + times.system)


async def measured(stack: Stack, phase: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Run ``phase``; with the tracker's progress polls per second and CPU seconds meanwhile."""
    polls, cpu, started = await polls_so_far(stack), tracker_cpu_s(stack), time.monotonic()
    result = await phase()
    seconds = time.monotonic() - started
    tracker = {
        "polls_per_s": round((await polls_so_far(stack) - polls) / seconds, 2),
        "tracker_cpu_s": round(tracker_cpu_s(stack) - cpu, 2),
        "seconds": round(seconds, 1),
    }
    return result, tracker


async def one_run(
    stack: Stack, a: dict[str, Any], b: dict[str, Any], streams: int, seconds: float
) -> dict[str, Any]:
    b_url = f"{stack.tracker_url}/v1/campaigns/{b['campaign']}/progress"
    a_url = f"{stack.tracker_url}/v1/campaigns/{a['campaign']}/progress/stream"
    alone, alone_tracker = await measured(stack, lambda: read_progress(b_url, b["key"], seconds))
    context = multiprocessing.get_context("spawn")
    opened, stop = context.Queue(), context.Event()
    holder = context.Process(target=hold_streams, args=(a_url, a["key"], streams, opened, stop))
    holder.start()
    try:
        admission = await asyncio.to_thread(opened.get, True, 120)
        beside, beside_tracker = await measured(stack, lambda: read_progress(b_url, b["key"], seconds))
        stop.set()
        closing = await asyncio.to_thread(opened.get, True, 60)
    finally:
        stop.set()
        await asyncio.to_thread(holder.join, 30)
        if holder.is_alive():
            holder.kill()
    alone_summary, beside_summary = latency_summary(alone), latency_summary(beside)
    return {
        "streams_admitted": admission["admitted"],
        "streams_refused_429": admission["refused"],
        "streams_failed": admission["failed"] + closing["failed_after_opening"],
        "stream_events": closing["events"],
        "alone": {**alone_summary, **alone_tracker},
        "beside_streams": {**beside_summary, **beside_tracker},
        "p50_ratio": round(beside_summary["p50_ms"] / alone_summary["p50_ms"], 2),
        "machine_load_1m": round(os.getloadavg()[0], 2),
    }


async def campaign_state(stack: Stack, api_key: str, campaign_id: uuid.UUID) -> str:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as client:
        response = await client.get(f"{stack.tracker_url}/v1/campaigns/{campaign_id}/progress")
    response.raise_for_status()
    return str(response.json()["state"])


async def wait_running(stack: Stack, api_key: str, campaign_id: uuid.UUID, timeout_s: float = 120) -> None:
    """Until the campaign runs (its snapshot taken), so its streams are polled at the running pace."""
    deadline = time.monotonic() + timeout_s
    while (state := await campaign_state(stack, api_key, campaign_id)) != "running":
        if time.monotonic() > deadline:
            raise TimeoutError(f"campaign {state} after {timeout_s}s")
        await asyncio.sleep(0.5)


async def cancel(stack: Stack, api_key: str, campaign_id: uuid.UUID) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as client:
        await client.post(f"{stack.api_url}/v1/campaigns/{campaign_id}/cancel")


async def configuration(
    name: str, extra_env: dict[str, str], streams: int, runs: int, seconds: float
) -> dict[str, Any]:
    async with isolated_stack(f"wce-bench-streams-{name}-") as (stack, pool, log_dir):
        stack.env.update(extra_env)
        stack.start()
        recipients = CAMPAIGN_RATE * int(runs * (2 * seconds + RUN_OVERHEAD_S) + 30)
        tenants: dict[str, dict[str, Any]] = {}
        for index, label in enumerate(("a", "b")):
            tenant_id, api_key, _ = await new_tenant(stack, CAMPAIGN_RATE)
            await seed(pool, tenant_id, recipients, 1_000_000 * (index + 1))
            tenants[label] = {"key": api_key, "campaign": await start_campaign(stack, api_key)}
        for tenant in tenants.values():
            await wait_running(stack, tenant["key"], tenant["campaign"])
        results = []
        try:
            for _ in range(runs):
                result = await one_run(stack, tenants["a"], tenants["b"], streams, seconds)
                result["a_campaign_state"] = await campaign_state(
                    stack, tenants["a"]["key"], tenants["a"]["campaign"]
                )
                print(f"  {name}: {result}", flush=True)
                results.append(result)
                await asyncio.sleep(2)
        finally:
            for tenant in tenants.values():
                await cancel(stack, tenant["key"], tenant["campaign"])
    median = {
        f"{phase}_{key}": statistics.median(r[phase][key] for r in results)
        for phase in ("alone", "beside_streams")
        for key in ("p50_ms", "p99_ms", "max_ms", "polls_per_s", "tracker_cpu_s")
    }
    for key in ("streams_admitted", "streams_refused_429", "stream_events", "p50_ratio"):
        median[key] = statistics.median(r[key] for r in results)
    return {
        "caps": extra_env or "defaults (20 per API key, 200 per tracker)",
        "logs": str(log_dir),
        "runs": results,
        "median": median,
        "meets_target": median["p50_ratio"] <= TARGET_P50_RATIO,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "progress_streams",
        "streams": args.streams,
        "runs": args.runs,
        "seconds_per_phase": args.seconds,
        "campaign_rate_per_s": CAMPAIGN_RATE,
        "b_reads_per_s": round(1 / READ_INTERVAL_S),
        "cpus": os.cpu_count(),
        "target": {"p50_ratio_at_most": TARGET_P50_RATIO},
    }
    for name, env in (("defaults", {}), ("raised", RAISED_CAPS)):
        if name in args.only:
            print(f"caps: {name}", flush=True)
            report[name] = await configuration(name, env, args.streams, args.runs, args.seconds)
    report["load_average"] = os.getloadavg()
    report["meets_target"] = all(
        report[name]["meets_target"] for name in ("defaults", "raised") if name in report
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="of each phase (alone, beside)")
    parser.add_argument("--quick", action="store_true", help="one run of 8 s per phase")
    parser.add_argument(
        "--only",
        default="defaults,raised",
        type=lambda value: set(value.split(",")),
        help="comma-separated configurations: defaults, raised (default: both)",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 1, 8.0
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
