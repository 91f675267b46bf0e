"""``make bench``: every benchmark in turn, then one report, ``bench/results/latest.json``.

Each benchmark is its own process writing ``bench/results/<name>.json``; this collects them with
the time and machine they ran on. A benchmark that fails is reported as such and the others
still run. ``--only NAME`` (repeatable) runs a subset and replaces only those entries of the
report; ``--quick`` asks for the short variants.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments); each writes bench/results/<name>.json
    "broker_baseline": (
        ["-m", "bench.broker_baseline", "--out", str(RESULTS / "broker_baseline.json")],
        ["--runs", "1"],
    ),
    "sim_capacity": (
        ["bench/sim_capacity.py", "--out", str(RESULTS / "sim_capacity.json")],
        ["--duration", "5"],
    ),
    "engine_e2e": (["-m", "bench.engine_e2e"], ["--quick"]),
    "sender_scaling": (["-m", "bench.sender_scaling"], ["--quick"]),
    "webhook_ingest": (["-m", "bench.webhook_ingest"], ["--runs", "1", "--count", "10000"]),
    # Imports the data set through the API and measures; generates it without the final analyse,
    # measures, analyses and measures again.
    "audience": (["-m", "bench.audience_bench", "--cold", "--imported"], []),
    # The web console's pages on the audience benchmark's data set (reused when present).
    "console_pages": (["-m", "bench.console_pages"], []),
    "pacing": (["-m", "bench.pacing_bench"], ["--quick"]),
    "noisy_neighbour": (["-m", "bench.noisy_neighbour"], ["--quick"]),
    "bulk_fairness": (["-m", "bench.bulk_fairness"], ["--quick"]),
    "progress_streams": (["-m", "bench.progress_streams"], ["--quick"]),
}


def run(name: str, quick: bool) -> dict[str, Any]:
    full, quick_args = BENCHMARKS[name]
    started = time.time()
    completed = subprocess.run([sys.executable, *full, *(quick_args if quick else [])], cwd=ROOT, check=False)
    entry: dict[str, Any] = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - started, 1),
        "exit_code": completed.returncode,
    }
    output = RESULTS / f"{name}.json"
    if completed.returncode == 0 and output.exists() and output.stat().st_mtime >= started:
        entry["result"] = json.loads(output.read_text())
    else:
        entry["error"] = "benchmark failed or wrote no result"
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "benchmarks": {},
    }
    latest = RESULTS / "latest.json"
    if args.only and latest.exists():
        # A partial run replaces only its own entries; the others keep their earlier results.
        report["benchmarks"] = json.loads(latest.read_text()).get("benchmarks", {})
    for name in args.only or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        report["benchmarks"][name] = run(name, args.quick)
        latest.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
