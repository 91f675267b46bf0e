"""The simulator's webhook client: the project's lean HTTP/1.1 client (``shared.http1``).

A keep-alive socket the receiver closed just as it was reused is retried once on a fresh one:
a repeated status callback is harmless (Twilio repeats them too, and receivers deduplicate).
"""

from __future__ import annotations

from shared.http1 import HttpResponse as HttpResult
from shared.http1 import KeepAliveClient as _KeepAliveClient

__all__ = ["HttpResult", "KeepAliveClient"]


class KeepAliveClient(_KeepAliveClient):
    def __init__(self, timeout_s: float = 10.0) -> None:
        super().__init__(timeout_s, retry_stale=True)
