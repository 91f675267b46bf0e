"""An incremental parser of server-sent events (the subset the tracker sends: event, id, data)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerEvent:
    name: str
    data: str
    id: str | None = None


class EventParser:
    """Feed it lines (without their newline); it returns an event when a blank line ends one."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if line == "":
            if not self._data:
                self._name = "message"
                return None
            event = ServerEvent(self._name, "\n".join(self._data), self._id)
            self._name, self._data = "message", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            self._id = value
        return None
