"""The time that scheduling and sending windows read: the system clock, or in development and
tests the system clock plus an offset a test controls through a file (``WCE_CLOCK_OFFSET_FILE``),
so hours of schedule can pass in seconds. Without the file ``now()`` is ``datetime.now(UTC)``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The offset file is read again at most this often.
REREAD_S = 0.2


class Clock:
    def __init__(self, offset_file: str | None = None) -> None:
        self._file = Path(offset_file) if offset_file else None
        self._offset = timedelta()
        self._read_at = float("-inf")

    def now(self) -> datetime:
        if self._file is None:
            return datetime.now(UTC)
        moment = time.monotonic()
        if moment - self._read_at >= REREAD_S:
            self._read_at = moment
            self._offset = timedelta(seconds=read_offset(self._file))
        return datetime.now(UTC) + self._offset


def read_offset(path: Path) -> float:
    """The offset in the file; 0 while it is missing or being rewritten."""
    try:
        return float(path.read_text().strip() or 0.0)
    except (OSError, ValueError):
        return 0.0


def set_offset(path: Path, seconds: float) -> None:
    """Move the clock of every service reading ``path`` (written whole, then renamed into place)."""
    scratch = path.with_suffix(".tmp")
    scratch.write_text(repr(seconds))
    scratch.replace(path)
