"""Adaptive pacing: a tenant configured faster than its Twilio account allows.

A campaign of ``--recipients`` (default 1,000) for a tenant configured at 80/s on a simulator
account limited to 40 creates a second (answering 63018 beyond that), against the same campaign
for a tenant configured at 40/s — the rate it should have had — measured in the same run. Reported:
the time from the first to the last accepted create, its ratio to ``recipients / 40`` seconds and
to the baseline, and the share of create requests refused with 63018. Medians of ``--runs`` runs
(default 3). Results go to ``bench/results/pacing.json``.

    python -m bench.pacing_bench [--recipients 1000] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

import asyncpg

from bench.harness import isolated_stack, new_tenant, run_campaign, seed, settle_callbacks, write_results
from tools.stack import ROOT, Stack
from tools.twilio_sim.admin_client import SimulatorAdmin

RESULTS = ROOT / "bench" / "results" / "pacing.json"
ACCOUNT_LIMIT = 40
CONFIGURED = 80


async def one_campaign(
    stack: Stack, pool: asyncpg.Pool, rate: int, recipients: int, offset: list[int]
) -> dict[str, float]:
    tenant_id, api_key, account_sid = await new_tenant(stack, rate)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        await sim.set_faults({"rate_limit_mps": ACCOUNT_LIMIT}, account_sid=account_sid)
    await seed(pool, tenant_id, recipients, offset[0])
    offset[0] += recipients
    await run_campaign(stack, pool, api_key, recipients, timeout_s=recipients / ACCOUNT_LIMIT * 6 + 60)
    async with SimulatorAdmin(stack.simulator_url) as sim:
        stats = await sim.stats(account_sid)
    await settle_callbacks(stack, account_sid)
    refused = int(stats["rejected_by_code"].get("63018", 0))
    return {
        "seconds": stats["last_at"] - stats["first_at"],
        "refused_share": refused / max(stats["requests_total"], 1),
        "accepted": stats["accepted_total"],
    }


def summary(runs: list[dict[str, float]], recipients: int) -> dict[str, Any]:
    seconds = statistics.median(run["seconds"] for run in runs)
    return {
        "seconds": [round(run["seconds"], 2) for run in runs],
        "median_seconds": round(seconds, 2),
        "ratio_to_account_limit": round(seconds / (recipients / ACCOUNT_LIMIT), 3),
        "refused_63018_share": [round(run["refused_share"], 4) for run in runs],
        "median_refused_63018_share": round(statistics.median(run["refused_share"] for run in runs), 4),
        "all_accepted": all(run["accepted"] == recipients for run in runs),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"recipients": args.recipients, "runs": args.runs}
    async with isolated_stack("wce-bench-pacing-") as (stack, pool, log_dir):
        report["logs"] = str(log_dir)
        stack.start()
        offset = [3_000_000]
        for name, rate in (("baseline_configured_40", ACCOUNT_LIMIT), ("configured_80", CONFIGURED)):
            runs = []
            for _ in range(args.runs):
                runs.append(await one_campaign(stack, pool, rate, args.recipients, offset))
                print(
                    f"  {name}: {runs[-1]['seconds']:.1f} s, 63018 share {runs[-1]['refused_share']:.2%}",
                    flush=True,
                )
            report[name] = summary(runs, args.recipients)
    paced, baseline = report["configured_80"], report["baseline_configured_40"]
    paced["ratio_to_baseline"] = round(paced["median_seconds"] / baseline["median_seconds"], 3)
    report["targets"] = {
        "all_delivered": paced["all_accepted"],
        "under_5pct_refused": paced["median_refused_63018_share"] < 0.05,
        "within_1_3x_of_limit": paced["ratio_to_account_limit"] <= 1.3,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each")
    args = parser.parse_args()
    if args.quick:
        args.runs = 1
    write_results(RESULTS, asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
