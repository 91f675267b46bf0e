"""Start-up settings from defaults, a JSON config file, environment and flags.

Config file shape (every key optional)::

    {"seed": 7, "callback_workers": 256, "callback_timeout_s": 10,
     "faults": {"latency_ms": 5, "permanent_errors": {"+15550000001": 21211}},
     "accounts": [{"account_sid": "AC...", "auth_token": "...", "rate_limit_mps": null,
                   "inbound_url": null, "faults": {...}, "templates": [...]}]}

Environment: SIM_HOST, SIM_PORT, SIM_CONFIG (file path), SIM_SEED, SIM_KEEP_ALIVE_S, SIM_MAX_REQUEST_AGE_S,
SIM_FAULTS (JSON object of global knobs), SIM_ACCOUNTS ("AC...:token,AC...:token"),
SIM_CALLBACKS ("0" disables status callbacks).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class SimSettings:
    host: str = "127.0.0.1"
    port: int = 8010
    seed: int | None = None
    # Deliveries in flight at once. Creates arrive on the sender's connections and
    # callbacks leave on these; when the process is CPU-bound each side progresses
    # in proportion to its concurrency, and 2-3 callbacks per create need the
    # larger share or their backlog grows without bound.
    callback_workers: int = 256
    callback_timeout_s: float = 10.0
    # Idle keep-alive connections are closed after this, as real servers do.
    keep_alive_s: float = 5.0
    # How often idle connections are looked for (None: every keep_alive_s). Until then, one past
    # its timeout is closed only when a request arrives on it — the race a client must avoid.
    idle_sweep_s: float | None = None
    # A request that waited longer than this for its turn is answered 503 unprocessed (one whose
    # client has gone is never processed at all; server.py).
    max_request_age_s: float = 15.0
    # A TLS listener (certificate and key as PEM files) beside the plain one.
    tls_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    faults: dict[str, Any] = field(default_factory=dict)
    accounts: list[dict[str, Any]] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.twilio_sim", description=__doc__.splitlines()[0])
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--config", help="JSON file with initial accounts, faults and settings")
    parser.add_argument("--seed", type=int, help="seed for every random fault and delay")
    parser.add_argument("--callback-workers", type=int, help="concurrent status-callback deliveries")
    parser.add_argument("--keep-alive-s", type=float, help="idle keep-alive timeout of client connections")
    parser.add_argument("--idle-sweep-s", type=float, help="how often idle connections are closed")
    parser.add_argument(
        "--max-request-age-s",
        type=float,
        help="a request older than this when its turn comes is answered 503",
    )
    parser.add_argument("--tls-port", type=int, help="also serve the API over TLS on this port")
    parser.add_argument("--tls-cert", help="PEM certificate chain of the TLS listener")
    parser.add_argument("--tls-key", help="PEM private key of the TLS listener")
    parser.add_argument("--no-callbacks", action="store_true", help="simulate statuses without calling back")
    return parser


def _env_accounts(value: str) -> list[dict[str, Any]]:
    accounts = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        sid, sep, token = item.partition(":")
        if not sep:
            raise SystemExit(f"SIM_ACCOUNTS entries must look like AC...:token, got {item!r}")
        accounts.append({"account_sid": sid, "auth_token": token})
    return accounts


def load_settings(argv: Sequence[str] | None, env: Mapping[str, str]) -> SimSettings:
    args = _parser().parse_args(argv)
    config_path = args.config or env.get("SIM_CONFIG")
    file: dict[str, Any] = orjson.loads(Path(config_path).read_bytes()) if config_path else {}
    faults = dict(file.get("faults") or {})
    if env.get("SIM_FAULTS"):
        faults.update(orjson.loads(env["SIM_FAULTS"]))
    if env.get("SIM_CALLBACKS") == "0" or args.no_callbacks:
        faults["callbacks_enabled"] = False
    accounts = list(file.get("accounts") or []) + _env_accounts(env.get("SIM_ACCOUNTS", ""))
    seed = args.seed if args.seed is not None else env.get("SIM_SEED", file.get("seed"))
    return SimSettings(
        host=args.host or env.get("SIM_HOST") or file.get("host") or SimSettings.host,
        port=int(args.port or env.get("SIM_PORT") or file.get("port") or SimSettings.port),
        seed=int(seed) if seed is not None else None,
        callback_workers=int(
            args.callback_workers or file.get("callback_workers") or SimSettings.callback_workers
        ),
        callback_timeout_s=float(file.get("callback_timeout_s") or SimSettings.callback_timeout_s),
        keep_alive_s=float(
            args.keep_alive_s
            or env.get("SIM_KEEP_ALIVE_S")
            or file.get("keep_alive_s")
            or SimSettings.keep_alive_s
        ),
        idle_sweep_s=args.idle_sweep_s or file.get("idle_sweep_s"),
        max_request_age_s=float(
            args.max_request_age_s
            or env.get("SIM_MAX_REQUEST_AGE_S")
            or file.get("max_request_age_s")
            or SimSettings.max_request_age_s
        ),
        tls_port=args.tls_port or file.get("tls_port"),
        tls_cert=args.tls_cert or file.get("tls_cert"),
        tls_key=args.tls_key or file.get("tls_key"),
        faults=faults,
        accounts=accounts,
    )
