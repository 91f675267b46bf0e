"""Capacity of the Twilio simulator: message creates per second with status callbacks on.

Three processes besides this one: the simulator (0 ms latency, callbacks on), a
minimal callback receiver, and a load generator holding ~64 keep-alive
connections. The load generator measures creates and latency over the window;
callback throughput comes from the simulator's own counters over the same window.

    python bench/sim_capacity.py --duration 10 --concurrency 64 --out bench/results/sim_capacity.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httptools
import httpx
import orjson
import psutil
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.twilio_sim.http_client import KeepAliveClient  # noqa: E402

WARMUP_S = 1.0
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# receiver role: answers every request with an empty 200, as cheaply as possible


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:
        assert self._transport is not None
        self._transport.write(_OK)


async def run_receiver(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# load generator role


async def run_load(
    sim_url: str, account_sid: str, token: str, callback_url: str, args: argparse.Namespace
) -> None:
    client = KeepAliveClient(timeout_s=30)
    url = f"{sim_url}/2010-04-01/Accounts/{account_sid}/Messages.json"
    auth = base64.b64encode(f"{account_sid}:{token}".encode()).decode()
    headers = (("Authorization", f"Basic {auth}"), ("Content-Type", "application/x-www-form-urlencoded"))
    latencies: list[float] = []
    failures = 0
    measuring = False
    stop_at = float("inf")
    counter = 0

    async def worker(worker_id: int) -> None:
        nonlocal failures, counter
        while time.monotonic() < stop_at:
            counter += 1
            body = urlencode(
                {
                    "To": f"whatsapp:+1555{worker_id:03d}{counter % 10000:04d}",
                    "From": "whatsapp:+14155550100",
                    "Body": "Hi Ana, your appointment is tomorrow at 10:00. Reply YES to confirm.",
                    "StatusCallback": callback_url,
                }
            ).encode()
            started = time.perf_counter()
            result = await client.post(url, body, headers)
            if measuring:
                if result.status == 201:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

    async with httpx.AsyncClient(base_url=sim_url) as admin:
        tasks = [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
        await asyncio.sleep(WARMUP_S)
        before = (await admin.get("/admin/stats")).json()
        window_start = time.monotonic()
        measuring = True
        stop_at = window_start + args.duration
        await asyncio.sleep(args.duration)
        measuring = False
        window = time.monotonic() - window_start
        after = (await admin.get("/admin/stats")).json()
        await asyncio.gather(*tasks)
    await client.close()
    latencies.sort()
    result = {
        "creates_per_s": round(len(latencies) / window, 1),
        "callbacks_per_s": round((after["callbacks_sent"] - before["callbacks_sent"]) / window, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "failed_creates": failures,
        "callbacks_failed": after["callbacks_failed"] - before["callbacks_failed"],
        "duration_s": round(window, 2),
        "concurrency": args.concurrency,
    }
    print(orjson.dumps(result).decode(), flush=True)


# orchestration


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _wait_healthy(url: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    sim_port, receiver_port = free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    account_sid, token = "AC" + uuid.uuid4().hex, uuid.uuid4().hex
    receiver = _spawn(__file__, "--role", "receiver", "--port", str(receiver_port))
    simulator = _spawn(
        "-m", "tools.twilio_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--seed", "1"
    )
    try:
        _wait_healthy(sim_url)
        httpx.post(f"{sim_url}/admin/accounts", json={"account_sid": account_sid, "auth_token": token})
        sim_cpu = psutil.Process(simulator.pid)
        cpu_before = sim_cpu.cpu_times()
        load = subprocess.run(
            [
                sys.executable,
                __file__,
                "--role",
                "load",
                "--sim-url",
                sim_url,
                "--account",
                f"{account_sid}:{token}",
                "--callback-url",
                f"http://127.0.0.1:{receiver_port}/twilio/status",
                "--duration",
                str(args.duration),
                "--concurrency",
                str(args.concurrency),
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=args.duration + 60,
        )
        if load.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{load.stderr.decode()[-4000:]}")
        cpu_after = sim_cpu.cpu_times()
        result: dict[str, Any] = orjson.loads(load.stdout.splitlines()[-1])
        busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        result["simulator_cpu_s_per_1k_creates"] = round(
            busy / max(result["creates_per_s"] * result["duration_s"], 1) * 1000, 3
        )
        result["cpu_count"] = os.cpu_count()
        return result
    finally:
        for process in (simulator, receiver):
            process.terminate()
        for process in (simulator, receiver):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["orchestrate", "receiver", "load"], default="orchestrate")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sim-url", help=argparse.SUPPRESS)
    parser.add_argument("--account", help=argparse.SUPPRESS)
    parser.add_argument("--callback-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receiver":
        uvloop.run(run_receiver(args.port))
        return
    if args.role == "load":
        account_sid, _, token = args.account.partition(":")
        uvloop.run(run_load(args.sim_url, account_sid, token, args.callback_url, args))
        return
    result = orchestrate(args)
    text = orjson.dumps(result).decode()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
