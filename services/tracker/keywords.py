"""Opt-out and opt-in keywords of inbound messages.

A keyword counts only as the whole message (trimmed, case-insensitive, inner whitespace
collapsed), as Twilio's own STOP filtering does: "stop" opts out, "please don't stop" does not.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

OPT_OUT_KEYWORDS = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "revoke",
        "optout",
        # The text WhatsApp sends when a user taps the "Stop promotions" button of a template.
        "stop promotions",
    }
)
OPT_IN_KEYWORDS = frozenset({"start", "unstop"})


class Action(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def classify(
    body: str,
    *,
    extra_opt_out: Iterable[str] = (),
    extra_opt_in: Iterable[str] = (),
    opt_out_type: str | None = None,
) -> Action | None:
    """What an inbound message asks for, if anything.

    ``opt_out_type`` is Twilio's ``OptOutType`` parameter, present when Advanced Opt-Out matched
    the message already; it is trusted as it is.
    """
    kind = (opt_out_type or "").strip().upper()
    if kind == "STOP":
        return Action.OPT_OUT
    if kind == "START":
        return Action.OPT_IN
    word = normalise(body)
    if not word:
        return None
    if word in OPT_OUT_KEYWORDS or word in {normalise(k) for k in extra_opt_out}:
        return Action.OPT_OUT
    if word in OPT_IN_KEYWORDS or word in {normalise(k) for k in extra_opt_in}:
        return Action.OPT_IN
    return None
