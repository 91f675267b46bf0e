"""What the sending-window check adds to a sender's CPU per message.

A sender checks the tenant's window once per chunk before claiming, and once per message before
its Twilio call (a window that closed after the claim hands the message back). Both are
``WindowGate.open_at(clock.now())``: the window arithmetic runs only when an answer can change
(at an opening or a closing), so a check is a clock read and a comparison. This measures that
check per message — for a tenant with a window and one without — on this machine, and sets it
beside the senders' CPU per message of the engine benchmark (``--sender-cpu-ms``, from the
README's table), which is the budget the check must stay within 10 % of.

    python bench/window_check.py --out bench/results/window_check.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.clock import Clock  # noqa: E402
from shared.sending_window import SendingWindow, WindowGate  # noqa: E402

WINDOW = SendingWindow.from_json(
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "09:00", "end": "20:00"}
)


def per_check_ns(gate: WindowGate, clock: Clock, checks: int) -> float:
    """CPU nanoseconds per check as the sender makes it, the best of five rounds."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time_ns()
        for _ in range(checks):
            _ = gate.always_open or gate.open_at(clock.now())
        best = min(best, (time.process_time_ns() - started) / checks)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument(
        "--chunk-size", type=int, default=20, help="recipients per chunk (one extra check each)"
    )
    parser.add_argument("--sender-cpu-ms", type=float, default=0.12, help="senders' CPU per message today")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    clock = Clock()
    windowed = per_check_ns(WindowGate(WINDOW, ZoneInfo("America/New_York")), clock, args.checks)
    unwindowed = per_check_ns(WindowGate(None, ZoneInfo("America/New_York")), clock, args.checks)
    # One check per message before its call, one per chunk before the claim.
    per_message_ns = windowed * (1 + 1 / args.chunk_size)
    result = {
        "check_ns_with_window": round(windowed, 1),
        "check_ns_without_window": round(unwindowed, 1),
        "per_message_ns_with_window": round(per_message_ns, 1),
        "sender_cpu_per_message_ms": args.sender_cpu_ms,
        "share_of_sender_cpu_percent": round(100 * per_message_ns / (args.sender_cpu_ms * 1e6), 3),
        "load_average": os.getloadavg(),
    }
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
