"""Plain TCP connections read with the kernel's receive timestamp of what was read.

Twilio counts a create when the request reaches it, and the simulator must count it there too.
Stamped at the moment its process gets round to parsing it, a request counts late by however long
the process waited for a CPU: on a loaded machine, requests that arrived evenly wait in the
socket, are then read and stamped together, and a one-second window of the simulator's counts
holds more than ever reached it in a second. The kernel stamps each packet as it arrives
(``SO_TIMESTAMPNS``) and hands the stamp of the last one read to ``recvmsg``; an event loop's
transport reads with plain ``recv`` and drops it, so these connections are read here, by a small
transport on the loop's reader and writer callbacks. A read that comes without a stamp (an
option the platform lacks) is stamped when read, as before.

An HTTP/1.1 client sends its next request on a connection only after the answer to the previous
one, so a read holds one request and its stamp is that request's arrival; a pipelining client's
earlier requests in one read get the stamp of the last.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

# Linux's option number; Python's socket module does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
READ_SIZE = 256 * 1024
# Pending output past which the protocol is asked to stop reading (as asyncio's default).
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
ACCEPT_BATCH = 100


class StampedProtocol(Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...

    def received(self, data: bytes, at: float) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


def enable_receive_timestamps(sock: socket.socket) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def receive_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's receive time (epoch seconds) in ``recvmsg``'s ancillary data, if any."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


class StampedTransport(asyncio.Transport):
    """One accepted connection: reads go to ``protocol.received`` with their arrival time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StampedProtocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._output = bytearray()
        self._reading = False
        self._closing = False
        self._closed = False
        self._writing_paused = False
        protocol.connection_made(self)
        if not self._closing:
            self.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if not self._output:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._fail(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._write_ready)
        self._output.extend(data)
        if len(self._output) > HIGH_WATER and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def close(self) -> None:
        """Stop reading; close once what was written has gone out."""
        if self._closing:
            return
        self.pause_reading()
        self._closing = True
        if not self._output:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        self._fail(None)

    def _read_ready(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(READ_SIZE, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        if not data:
            self.pause_reading()
            if not self._protocol.eof_received():
                self.close()
            return
        self._protocol.received(data, receive_stamp(ancillary) or time.time())

    def _write_ready(self) -> None:
        try:
            sent = self._sock.send(self._output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self._output[:sent]
        if self._writing_paused and len(self._output) <= LOW_WATER:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._output:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._finish(None)

    def _fail(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self.pause_reading()
        self._closing = True
        self._output.clear()
        self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._finish, exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.pause_reading()
        self._loop.remove_writer(self._fd)
        self._sock.close()
        self._protocol.connection_lost(exc)


class StampedServer:
    """A listening socket whose connections get a ``StampedTransport`` each."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], StampedProtocol],
        host: str,
        port: int,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock = socket.create_server((host, port), backlog=backlog, reuse_port=False)
        self._sock.setblocking(False)
        # Accepted sockets inherit the option, so not even their first request goes unstamped.
        self._stamped = enable_receive_timestamps(self._sock)
        loop.add_reader(self._sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors, or a connection reset before it was taken: the next one.
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._stamped:
                enable_receive_timestamps(conn)
            StampedTransport(self._loop, conn, self._factory())

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
