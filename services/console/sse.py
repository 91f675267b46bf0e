"""Server-sent events as the console speaks them: HTML fragments for htmx's SSE extension, and
the tracker's progress events read back from its stream."""

from __future__ import annotations

from collections.abc import AsyncIterator


def event(name: str, html: str) -> bytes:
    """One event whose data is ``html`` (every line its own ``data:`` line, as SSE requires)."""
    lines = html.splitlines() or [""]
    return (f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


async def parse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event name, data) of each event in a stream of SSE lines; comments and retries skipped."""
    name, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
