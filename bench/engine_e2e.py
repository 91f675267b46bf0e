"""The sending engine end to end, on this machine, with the Twilio simulator.

- End-to-end rate: a campaign of ``--recipients`` (default 100,000) for a tenant without a rate
  limit, status callbacks on, at simulator latencies of 0 ms and 100 ms; the time from the start
  request to every recipient ``sent`` (or later). Compared with the raw one-hop persistent broker
  rate (``bench.broker_baseline``) measured in the same run.
- Throttle accuracy at 80/s and 400/s: the simulator's own per-second counts of accepted
  messages; the mean rate and the highest count in any one-second window.
- Peak RSS of every service process during the end-to-end runs, and the CPU each part of the
  system spent per message (services, simulator, database and broker servers).

Each figure is the median of ``--runs`` runs (default 3). Results go to
``bench/results/engine_e2e.json``.

    python -m bench.engine_e2e [--recipients 100000] [--runs 3] [--quick] [--frequency-cap 5/30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
from typing import Any

import asyncpg
import httpx
import psutil

from bench.broker_baseline import measure as broker_baseline
from bench.harness import (
    CpuMeter,
    isolated_stack,
    median_cpu,
    new_tenant,
    run_campaign,
    seed,
    settle_callbacks,
    write_results,
)
from tools.stack import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

RESULTS = ROOT / "bench" / "results" / "engine_e2e.json"


class PeakRss:
    """Samples the resident memory of the stack's processes twice a second."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, process in self._stack.processes.items():
                try:
                    rss = psutil.Process(process.pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            self._stop.wait(0.5)


async def e2e_rates(
    stack: Stack,
    pool: asyncpg.Pool,
    recipients: int,
    runs: int,
    offset: list[int],
    latencies: list[int],
    frequency_cap: dict[str, int] | None = None,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for latency_ms in latencies:
        rates, peaks, cpu = [], [], []
        for _ in range(runs):
            tenant_id, api_key, account_sid = await new_tenant(stack, None)
            if frequency_cap is not None:
                await set_frequency_cap(stack, api_key, frequency_cap)
            async with SimulatorAdmin(stack.simulator_url) as sim:
                await sim.set_faults({"latency_ms": latency_ms}, account_sid=account_sid)
            await seed(pool, tenant_id, recipients, offset[0])
            offset[0] += recipients
            # The CPU figure covers the callbacks' processing too: they are part of each message.
            with CpuMeter(stack) as meter:
                with PeakRss(stack) as rss:
                    seconds = await run_campaign(stack, pool, api_key, recipients, timeout_s=1800)
                await settle_callbacks(stack, account_sid)
            rates.append(recipients / seconds)
            peaks.append(rss.peaks)
            cpu.append(meter.ms_per_message(recipients))
            print(
                f"  latency {latency_ms} ms: {recipients / seconds:,.0f} msgs/s ({seconds:.1f} s); "
                f"CPU ms per message {cpu[-1]}",
                flush=True,
            )
        results[f"latency_{latency_ms}ms"] = {
            "recipients": recipients,
            "rates_per_s": [round(r, 1) for r in rates],
            "median_per_s": round(statistics.median(rates), 1),
            "cpu_ms_per_message": median_cpu(cpu),
            "peak_rss_mb": {
                name: round(max(p.get(name, 0) for p in peaks) / 2**20, 1) for name in stack.processes
            },
        }
    return results


async def set_frequency_cap(stack: Stack, api_key: str, cap: dict[str, int]) -> None:
    """A cap no message of the run reaches: every claim counts its numbers without skipping any."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as client:
        response = await client.patch(
            "/v1/tenant", json={"frequency_cap": cap}, headers={"Authorization": f"Bearer {api_key}"}
        )
    response.raise_for_status()


async def throttle_accuracy(
    stack: Stack, pool: asyncpg.Pool, runs: int, seconds: int, offset: list[int]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for rate in (80, 400):
        means, maxima = [], []
        for _ in range(runs):
            tenant_id, api_key, account_sid = await new_tenant(stack, rate)
            total = rate * seconds
            await seed(pool, tenant_id, total, offset[0])
            offset[0] += total
            await run_campaign(stack, pool, api_key, total, timeout_s=seconds * 4 + 60)
            async with SimulatorAdmin(stack.simulator_url) as sim:
                stats = await sim.stats(account_sid)
            await settle_callbacks(stack, account_sid)
            span = stats["last_at"] - stats["first_at"]
            means.append((stats["accepted_total"] - 1) / span)
            maxima.append(stats["max_in_any_second"])
            print(f"  {rate}/s: mean {means[-1]:.1f}/s, max in any second {maxima[-1]}", flush=True)
        mean = statistics.median(means)
        results[f"rate_{rate}"] = {
            "target_per_s": rate,
            "means_per_s": [round(m, 2) for m in means],
            "median_mean_per_s": round(mean, 2),
            "mean_error_pct": round((mean - rate) / rate * 100, 2),
            "max_in_any_second": maxima,
            "never_above_target": max(maxima) <= rate,
        }
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "recipients": args.recipients,
        "runs": args.runs,
        "frequency_cap": args.frequency_cap,
    }
    async with isolated_stack("wce-bench-") as (stack, pool, log_dir):
        report["logs"] = str(log_dir)
        if "baseline" in args.only:
            print("broker baseline (one hop, persistent)", flush=True)
            baseline = await broker_baseline(30_000, args.runs)
            report["broker_baseline"] = baseline
            print(f"  {baseline['median_per_s']:,.0f} msgs/s", flush=True)
        stack.start()
        offset = [1_000_000]
        if "e2e" in args.only:
            print("end-to-end rate", flush=True)
            report["end_to_end"] = await e2e_rates(
                stack, pool, args.recipients, args.runs, offset, args.latencies, args.frequency_cap
            )
        if "throttle" in args.only:
            print("throttle accuracy", flush=True)
            report["throttle"] = await throttle_accuracy(
                stack, pool, args.runs, args.throttle_seconds, offset
            )
    if "broker_baseline" in report:
        base = float(report["broker_baseline"]["median_per_s"])
        for figures in report.get("end_to_end", {}).values():
            figures["share_of_broker_baseline"] = round(figures["median_per_s"] / base, 3)
    report["targets"] = targets(report)
    return report


def targets(report: dict[str, Any]) -> dict[str, bool]:
    e2e = report.get("end_to_end", {})
    throttle = report.get("throttle", {})
    checks = {
        "e2e_100ms_at_least_2000_per_s": e2e.get("latency_100ms", {}).get("median_per_s", 0) >= 2000,
        "e2e_at_least_35pct_of_broker": all(
            f.get("share_of_broker_baseline", 0) >= 0.35 for f in e2e.values()
        ),
        "throttle_mean_within_2pct": all(abs(t["mean_error_pct"]) <= 2 for t in throttle.values()),
        "throttle_never_above_target": all(t["never_above_target"] for t in throttle.values()),
        "peak_rss_under_200mb": all(
            mb <= 200 for f in e2e.values() for name, mb in f["peak_rss_mb"].items() if name != "simulator"
        ),
    }
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--throttle-seconds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one run of 20,000 recipients (a smoke check)")
    parser.add_argument(
        "--only",
        default="baseline,e2e,throttle",
        type=lambda value: set(value.split(",")),
        help="comma-separated parts to run: baseline, e2e, throttle (default: all)",
    )
    parser.add_argument(
        "--latencies",
        default=[0, 100],
        type=lambda value: [int(v) for v in value.split(",")],
        help="comma-separated simulator latencies in ms for the end-to-end rate (default: 0,100)",
    )
    parser.add_argument(
        "--frequency-cap",
        type=lambda value: dict(zip(("messages", "days"), map(int, value.split("/")), strict=True)),
        help="MESSAGES/DAYS: give the end-to-end tenants this frequency cap (e.g. 5/30)",
    )
    args = parser.parse_args()
    if args.quick:
        args.recipients, args.runs, args.throttle_seconds = 20_000, 1, 8
    report = asyncio.run(main_async(args))
    complete = (
        args.only == {"baseline", "e2e", "throttle"} and args.latencies == [0, 100] and not args.frequency_cap
    )
    write_results(RESULTS if complete else RESULTS.with_suffix(".partial.json"), report)


if __name__ == "__main__":
    main()
