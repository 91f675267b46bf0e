"""The status-callback batch on the wire (``twilio.status.batch.v1``), without Pydantic on the hot
path.

Every status callback crosses the broker inside one of these, so building and reading them is a
good share of the tracker's CPU. ``StatusCallbackBatch`` in ``shared.events`` stays the contract:
the webhook writes exactly the JSON its ``model_dump`` would, and the consumer reads a body
directly only when it has the exact shape and types the webhook writes; any other body goes to
the model, which accepts it or says why it is invalid.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import lru_cache

import orjson

from shared.events import StatusCallbackBatch

MESSAGE_TYPE = StatusCallbackBatch.message_type()
# The model's bounds on ``callbacks``.
MAX_CALLBACKS = 10_000

# (tenant id in canonical form, params, idempotency token, received at)
Received = tuple[str, dict[str, str], str | None, float]

_BATCH_KEYS = frozenset({"v", "callbacks"})
_CALLBACK_KEYS = frozenset({"v", "tenant_id", "params", "idempotency_token", "received_at"})
_HEAD = b'{"v":1,"callbacks":['
_TAIL = b"]}"


@lru_cache(maxsize=4096)
def canonical_uuid(text: str) -> str | None:
    """``str(UUID(text))``, or None when ``text`` is no UUID.

    Every request names its tenant and a process serves few tenants, so the answer is cached;
    the bound keeps made-up ids from growing it.
    """
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def encode_callback(
    *, tenant_id: str, params: dict[str, str], idempotency_token: str | None, received_at: float
) -> bytes:
    """One element of ``callbacks``, as ``StatusCallback.model_dump(mode="json")`` serializes it;
    ``tenant_id`` must be in canonical form."""
    return orjson.dumps(
        {
            "v": 1,
            "tenant_id": tenant_id,
            "params": params,
            "idempotency_token": idempotency_token,
            "received_at": received_at,
        }
    )


def batch_body(callbacks: Sequence[bytes]) -> bytes:
    """The message body carrying ``callbacks`` (from ``encode_callback``; 1 to MAX_CALLBACKS)."""
    return _HEAD + b",".join(callbacks) + _TAIL


def decode_batch(body: bytes) -> list[Received]:
    """The callbacks of a batch body; raises pydantic's ValidationError when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    received = _exact(data)
    if received is not None:
        return received
    batch = StatusCallbackBatch.model_validate_json(body)
    return [
        (str(callback.tenant_id), callback.params, callback.idempotency_token, callback.received_at)
        for callback in batch.callbacks
    ]


def _exact(data: object) -> list[Received] | None:
    """The callbacks when ``data`` has the exact shape and types the webhook writes (which the
    model accepts unchanged), otherwise None."""
    if type(data) is not dict or data.keys() != _BATCH_KEYS or type(data["v"]) is not int or data["v"] != 1:
        return None
    callbacks = data["callbacks"]
    if type(callbacks) is not list or not 1 <= len(callbacks) <= MAX_CALLBACKS:
        return None
    received: list[Received] = []
    for item in callbacks:
        if (
            type(item) is not dict
            or item.keys() != _CALLBACK_KEYS
            or type(item["v"]) is not int
            or item["v"] != 1
        ):
            return None
        tenant_id = item["tenant_id"]
        params = item["params"]
        token = item["idempotency_token"]
        at = item["received_at"]
        if (
            type(tenant_id) is not str
            or canonical_uuid(tenant_id) != tenant_id
            or type(params) is not dict
            or not all(type(value) is str for value in params.values())
            or (token is not None and type(token) is not str)
            or type(at) is not float
        ):
            return None
        received.append((tenant_id, params, token, at))
    return received
