"""Fault and behaviour knobs, their JSON-merge layering, and the create decision.

Knobs resolve as defaults < global overrides < per-account overrides. Patches
follow JSON Merge Patch (RFC 7386): a ``null`` value removes an override, and
``permanent_errors`` is merged number by number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NamedTuple

from .errors import TwilioError, is_sync, sync_error
from .stats import ACCEPTED, ERROR_AFTER_CREATE, REJECTED, TIMEOUT_AFTER_CREATE


@dataclass(frozen=True, slots=True)
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    p_429: float = 0.0
    retry_after_s: int | None = None
    p_5xx_before: float = 0.0
    p_5xx_after: float = 0.0
    p_timeout_after: float = 0.0
    timeout_hang_s: float = 30.0
    # E.164 number (without the "whatsapp:" prefix) -> Twilio error code.
    permanent_errors: Mapping[str, int] = field(default_factory=dict)
    rate_limit_mps: int | None = None
    # Meta refuses the sender for spam (131048) while this is on.
    spam_rate_limited: bool = False
    # At most this many creates per sender-recipient pair within pair_rate_window_s (131056 past it).
    pair_rate_limit: int | None = None
    pair_rate_window_s: float = 6.0
    # The spam and pair-rate refusals above come in the status callback (failed, with ErrorCode)
    # after the create was accepted, as real Twilio mostly reports them, instead of as the create's
    # answer.
    rate_refusals_in_callback: bool = False
    callbacks_enabled: bool = True
    status_delay_ms: float = 10.0
    status_jitter_ms: float = 40.0
    delivered_ratio: float = 1.0
    read_ratio: float = 0.5
    p_duplicate_callback: float = 0.0
    p_out_of_order: float = 0.0
    p_drop_callback: float = 0.0
    # A new connection is left unread this long, with this probability, as a starved server's
    # listen queue leaves it: its requests wait in the socket. So is a request arriving on a
    # reused keep-alive connection (each with this probability), as a starved process leaves its
    # sockets unread. Connections belong to no account until a request is read, so only the
    # global layer counts.
    p_connection_unread: float = 0.0
    connection_unread_s: float = 0.0


_PROBABILITIES = frozenset(
    {
        "p_429",
        "p_5xx_before",
        "p_5xx_after",
        "p_timeout_after",
        "delivered_ratio",
        "read_ratio",
        "p_duplicate_callback",
        "p_out_of_order",
        "p_drop_callback",
        "p_connection_unread",
    }
)
_DURATIONS = frozenset(
    {
        "latency_ms",
        "latency_jitter_ms",
        "timeout_hang_s",
        "status_delay_ms",
        "status_jitter_ms",
        "pair_rate_window_s",
        "connection_unread_s",
    }
)
_OPTIONAL_INTS = frozenset({"retry_after_s", "rate_limit_mps", "pair_rate_limit"})
_FLAGS = frozenset({"callbacks_enabled", "spam_rate_limited", "rate_refusals_in_callback"})
KNOBS = frozenset(f.name for f in fields(FaultConfig))


class FaultError(ValueError):
    """A fault patch with an unknown knob or a value of the wrong kind."""


def number_key(address: str) -> str:
    return address.removeprefix("whatsapp:")


def _check(name: str, value: Any) -> Any:
    if name not in KNOBS:
        raise FaultError(f"unknown fault knob {name!r}; known: {sorted(KNOBS)}")
    if value is None:
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in _PROBABILITIES and not (is_number and 0.0 <= value <= 1.0):
        raise FaultError(f"{name} must be a probability between 0 and 1")
    if name in _DURATIONS and not (is_number and value >= 0):
        raise FaultError(f"{name} must be a non-negative number")
    if name in _OPTIONAL_INTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        raise FaultError(f"{name} must be a non-negative integer or null")
    if name in _FLAGS and not isinstance(value, bool):
        raise FaultError(f"{name} must be a boolean")
    if name == "permanent_errors":
        if not isinstance(value, dict) or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value.values()
        ):
            raise FaultError("permanent_errors must map numbers to integer error codes (or null)")
        return {number_key(k): v for k, v in value.items()}
    return value


def merge_patch(overrides: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with ``patch`` applied; raises FaultError on bad input."""
    merged = dict(overrides)
    for name, raw in patch.items():
        value = _check(name, raw)
        if value is None:
            merged.pop(name, None)
        elif name == "permanent_errors":
            numbers = {**merged.get(name, {}), **value}
            merged[name] = {k: v for k, v in numbers.items() if v is not None}
        else:
            merged[name] = value
    return merged


def resolve(*layers: Mapping[str, Any]) -> FaultConfig:
    config = FaultConfig()
    errors: dict[str, int] = {}
    for layer in layers:
        errors.update(layer.get("permanent_errors", {}))
        config = replace(config, **{k: v for k, v in layer.items() if k != "permanent_errors"})
    return replace(config, permanent_errors=errors)


class FaultBook:
    """Current overrides, global and per account, with resolved configs cached."""

    def __init__(self, startup_global: Mapping[str, Any]) -> None:
        self._startup = merge_patch({}, startup_global)
        self._global: dict[str, Any] = dict(self._startup)
        self._accounts: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, FaultConfig] = {}

    def patch(self, patch: Mapping[str, Any], account_sid: str | None = None) -> None:
        if account_sid is None:
            self._global = merge_patch(self._global, patch)
        else:
            self._accounts[account_sid] = merge_patch(self._accounts.get(account_sid, {}), patch)
        self._cache.clear()

    def for_account(self, account_sid: str) -> FaultConfig:
        config = self._cache.get(account_sid)
        if config is None:
            config = self._cache[account_sid] = resolve(self._global, self._accounts.get(account_sid, {}))
        return config

    def global_config(self) -> FaultConfig:
        """The knobs without any account's overrides (for what belongs to no account)."""
        config = self._cache.get("")
        if config is None:
            config = self._cache[""] = resolve(self._global)
        return config

    def reset(self) -> None:
        self._global = dict(self._startup)
        self._accounts.clear()
        self._cache.clear()

    def forget_accounts(self) -> None:
        self._accounts.clear()
        self._cache.clear()

    def describe(self, account_sid: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {
            "global": asdict(resolve(self._global)),
            "accounts": {sid: dict(overrides) for sid, overrides in self._accounts.items()},
        }
        if account_sid is not None:
            result["effective"] = asdict(self.for_account(account_sid))
        return result


class CreateDecision(NamedTuple):
    outcome: str
    error: TwilioError | None = None
    async_error: int | None = None
    latency_s: float = 0.0
    # Extra wait after creating, so the caller times out on a message that exists.
    hang_s: float = 0.0
    retry_after_s: int | None = None

    @property
    def creates(self) -> bool:
        return self.outcome != REJECTED


def decide_create(
    config: FaultConfig,
    to: str,
    draw: float,
    jitter_draw: float,
    sent_this_second: int,
    pair_recent: int = 0,
) -> CreateDecision:
    """What happens to one create call.

    ``draw`` and ``jitter_draw`` are uniform in [0, 1). The random faults
    partition ``draw`` so at most one fires per request; probabilities are
    taken in the order 429, 5xx-before, 5xx-after, timeout-after.
    ``pair_recent``: creates accepted for this sender and recipient within
    ``pair_rate_window_s``.
    """
    delay = (config.latency_ms + jitter_draw * config.latency_jitter_ms) / 1000.0
    code = config.permanent_errors.get(number_key(to))
    if code is not None and is_sync(code):
        return CreateDecision(REJECTED, sync_error(code), latency_s=delay)
    if draw < config.p_429:
        return CreateDecision(
            REJECTED, sync_error(20429), latency_s=delay, retry_after_s=config.retry_after_s
        )
    draw -= config.p_429
    if draw < config.p_5xx_before:
        return CreateDecision(REJECTED, sync_error(20500), latency_s=delay)
    draw -= config.p_5xx_before
    # A simplification: Twilio reports a channel rate overrun (63018) asynchronously,
    # the simulator answers it synchronously as a 429 so senders treat it as transient.
    if config.rate_limit_mps is not None and sent_this_second >= config.rate_limit_mps:
        return CreateDecision(REJECTED, sync_error(63018), latency_s=delay)
    # Meta's spam and pair-rate refusals: as the create's answer, or (as real Twilio mostly
    # reports them) accepted and failed in the status callback.
    refusal = None
    if config.spam_rate_limited:
        refusal = 131048
    elif config.pair_rate_limit is not None and pair_recent >= config.pair_rate_limit:
        refusal = 131056
    if refusal is not None:
        if config.rate_refusals_in_callback:
            return CreateDecision(ACCEPTED, async_error=refusal, latency_s=delay)
        return CreateDecision(REJECTED, sync_error(refusal), latency_s=delay)
    if draw < config.p_5xx_after:
        return CreateDecision(ERROR_AFTER_CREATE, sync_error(20500), async_error=code, latency_s=delay)
    draw -= config.p_5xx_after
    if draw < config.p_timeout_after:
        return CreateDecision(
            TIMEOUT_AFTER_CREATE, async_error=code, latency_s=delay, hang_s=config.timeout_hang_s
        )
    return CreateDecision(ACCEPTED, async_error=code, latency_s=delay)
