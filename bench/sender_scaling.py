"""Sender throughput with 1, 2 and 3 sender processes, beside the one-hop broker baseline.

For each sender count the whole stack (simulator, segmenter, tracker, one dispatcher, N senders)
is started on a database and broker vhost of its own, and a campaign of ``--recipients`` (default
50,000) for a tenant without a rate limit is sent at a simulator latency of ``--latency-ms``
(default 100 ms, a realistic Twilio response time), status callbacks on. Reported per sender
count: the median rate from the start request to every recipient sent, and the CPU each part of
the system spent per message (the input of docs/scaling.md). The raw one-hop persistent broker
rate is measured in the same run on a classic and on a quorum queue (the engine's queues are
quorum queues), because the shared machine's speed varies from run to run; quote the load
average printed with the figures.

    python -m bench.sender_scaling [--senders 1,2,3] [--recipients 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from typing import Any

from bench.broker_baseline import measure as broker_baseline
from bench.harness import (
    CpuMeter,
    Environment,
    isolated_stack,
    median_cpu,
    new_tenant,
    run_campaign,
    seed,
    settle_callbacks,
    write_results,
)
from tools.stack import ROOT
from tools.twilio_sim.admin_client import SimulatorAdmin

RESULTS = ROOT / "bench" / "results" / "sender_scaling.json"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def with_senders(senders: int, recipients: int, runs: int, latency_ms: int) -> dict[str, Any]:
    rates: list[float] = []
    cpu: list[dict[str, float]] = []
    loads: list[list[float]] = []
    async with isolated_stack(f"wce-bench-senders{senders}-", senders=senders) as (stack, pool, _logs):
        stack.start()
        for run in range(runs):
            _tenant, api_key, account_sid = await new_tenant(stack, None)
            async with SimulatorAdmin(stack.simulator_url) as sim:
                await sim.set_faults({"latency_ms": latency_ms}, account_sid=account_sid)
            await seed(pool, _tenant, recipients, 1_000_000 + run * recipients)
            with CpuMeter(stack) as meter:
                seconds = await run_campaign(stack, pool, api_key, recipients, timeout_s=1800)
                loads.append(load_average())
                await settle_callbacks(stack, account_sid)
            rates.append(recipients / seconds)
            cpu.append(meter.ms_per_message(recipients))
            print(
                f"  {senders} sender(s): {rates[-1]:,.0f} msgs/s ({seconds:.1f} s), load {loads[-1]}, "
                f"CPU ms per message {cpu[-1]}",
                flush=True,
            )
    senders_cpu = [sum(v for k, v in run.items() if k.startswith("sender")) for run in cpu]
    return {
        "senders": senders,
        "recipients": recipients,
        "rates_per_s": [round(rate, 1) for rate in rates],
        "median_per_s": round(statistics.median(rates), 1),
        "cpu_ms_per_message": median_cpu(cpu),
        "all_senders_cpu_ms_per_message": round(statistics.median(senders_cpu), 3),
        "load_average_1_5_15": loads,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "latency_ms": args.latency_ms,
        "recipients": args.recipients,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_average(),
    }
    environment = Environment()
    environment.create()
    try:
        print("broker baseline (one hop, persistent, confirmed)", flush=True)
        for queue_type in ("classic", "quorum"):
            result = await broker_baseline(
                args.baseline_count, args.runs, queue_type=queue_type, amqp_url=environment.amqp_url
            )
            report[f"broker_baseline_{queue_type}"] = result
            print(f"  {queue_type}: {result['median_per_s']:,.0f} msgs/s", flush=True)
    finally:
        environment.destroy()
    report["by_senders"] = []
    for senders in args.senders:
        print(f"{senders} sender process(es)", flush=True)
        report["by_senders"].append(await with_senders(senders, args.recipients, args.runs, args.latency_ms))
    base = float(report["broker_baseline_classic"]["median_per_s"])
    one = report["by_senders"][0]["median_per_s"]
    for figures in report["by_senders"]:
        figures["share_of_broker_baseline"] = round(figures["median_per_s"] / base, 3)
        figures["speed_up_over_first"] = round(figures["median_per_s"] / one, 3)
    report["load_average_at_end"] = load_average()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--senders", default=[1, 2, 3], type=lambda v: [int(n) for n in v.split(",")])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--baseline-count", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true", help="one run of 10,000 recipients per sender count")
    args = parser.parse_args()
    if args.quick:
        args.recipients, args.runs, args.baseline_count = 10_000, 1, 10_000
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
