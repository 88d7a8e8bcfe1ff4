"""A process's terminal or stdio as the daemon serves it: output pumped into a log file and
a scrollback ring, fanned out to every attached client; input and resizes from any of them.

Flow control: each attached client has a bounded queue. When one is full, the daemon stops
reading the PTY until it drains, so a flood (``cat /dev/urandom``) blocks the writer in the
container instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import struct
from collections.abc import Callable

from runtime.oci import terminal
from runtime.supervisor import protocol

logger = logging.getLogger(__name__)

SCROLLBACK = 1 << 20
LOG_LIMIT = 16 << 20
READ_SIZE = 65536
QUEUE_FRAMES = 64
LOG_HEADER = struct.Struct(">BI")


class Attacher:
    """One attached client: frames to send it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_FRAMES)


class Session:
    def __init__(
        self,
        key: str,
        fds: list[int],
        *,
        tty: bool,
        log_path: str | None,
        on_closed: Callable[[Session], None] | None = None,
        on_close_stdin: Callable[[], None] | None = None,
    ) -> None:
        self.on_close_stdin = on_close_stdin
        self.key = key
        self.tty = tty
        self.fds = fds
        self.master = fds[0] if tty else -1
        self.stdin = fds[0]
        self.outputs = {fds[0]: protocol.STDOUT} if tty else {fds[1]: 1, fds[2]: 2}
        self.log_path = log_path
        self.scrollback = bytearray()
        self.attachers: list[Attacher] = []
        self.open_outputs = set(self.outputs)
        self.paused = False
        self.closed = asyncio.Event()
        self.on_closed = on_closed
        self.exit_code: int | None = None
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        if log_path:
            self._load_scrollback(log_path)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self.outputs:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._readable, fd)
        if not self.tty:
            os.set_blocking(self.stdin, False)

    def _load_scrollback(self, path: str) -> None:
        """After a daemon restart, the scrollback is the tail of the log."""
        for kind, data in read_log(path, tail_bytes=SCROLLBACK * 2):
            if kind == protocol.STDOUT or self.tty:
                self.scrollback += data
        del self.scrollback[:-SCROLLBACK]

    # -- output -----------------------------------------------------------------------------

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: the PTY's last peer closed
        if not data:
            self._output_closed(fd)
            return
        kind = self.outputs[fd]
        self._record(kind, data)
        frame = protocol.frame(kind, data)
        for attacher in list(self.attachers):
            try:
                attacher.queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._pause()
                self._block(attacher, frame)

    def _record(self, kind: int, data: bytes) -> None:
        self.scrollback += data
        if len(self.scrollback) > SCROLLBACK:
            del self.scrollback[: len(self.scrollback) - SCROLLBACK]
        if self._log is not None:
            self._log.write(LOG_HEADER.pack(kind, len(data)) + data)
            self._log.flush()
            if self._log.tell() > LOG_LIMIT:
                self._rotate()

    def _rotate(self) -> None:
        assert self._log is not None and self.log_path is not None
        self._log.close()
        os.replace(self.log_path, f"{self.log_path}.1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115

    def _block(self, attacher: Attacher, frame: bytes) -> None:
        """The client is behind: wait for room, reading no more output meanwhile."""

        async def put() -> None:
            await attacher.queue.put(frame)
            if all(not a.queue.full() for a in self.attachers):
                self._resume()

        asyncio.get_running_loop().create_task(put())

    def _pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        loop = asyncio.get_running_loop()
        for fd in self.open_outputs:
            loop.remove_reader(fd)

    def _resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        loop = asyncio.get_running_loop()
        for fd in self.open_outputs:
            loop.add_reader(fd, self._readable, fd)

    def _output_closed(self, fd: int) -> None:
        with contextlib.suppress(ValueError):
            asyncio.get_running_loop().remove_reader(fd)
        self.open_outputs.discard(fd)
        if not self.open_outputs:
            self.closed.set()
            if self.on_closed is not None:
                self.on_closed(self)

    # -- input and attachers ----------------------------------------------------------------

    def write(self, data: bytes) -> None:
        try:
            _write_all(self.stdin, data)
        except OSError as exc:
            logger.debug("session %s: input dropped: %s", self.key, exc)

    def close_stdin(self) -> None:
        if not self.tty and self.stdin >= 0:
            with contextlib.suppress(OSError):
                os.close(self.stdin)
            self.stdin = -1
            if self.on_close_stdin is not None:
                self.on_close_stdin()

    def resize(self, rows: int, cols: int) -> None:
        if self.tty and 0 < rows < 10000 and 0 < cols < 10000:
            with contextlib.suppress(OSError):
                terminal.set_size(self.master, rows, cols)

    def attach(self, replay: bool) -> Attacher:
        attacher = Attacher()
        if replay and self.scrollback:
            attacher.queue.put_nowait(protocol.frame(protocol.STDOUT, bytes(self.scrollback)))
        attacher.queue.put_nowait(protocol.frame(protocol.REPLAY_DONE, b""))
        self.attachers.append(attacher)
        return attacher

    def detach(self, attacher: Attacher) -> None:
        with contextlib.suppress(ValueError):
            self.attachers.remove(attacher)
        if self.paused and all(not a.queue.full() for a in self.attachers):
            self._resume()

    def finish(self, exit_code: int) -> None:
        """The process exited: tell attachers once the output is drained."""
        self.exit_code = exit_code

        async def announce() -> None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.closed.wait(), 2.0)
            frame = protocol.frame(protocol.EXIT, str(exit_code).encode())
            for attacher in list(self.attachers):
                await attacher.queue.put(frame)
                await attacher.queue.put(None)

        asyncio.get_running_loop().create_task(announce())

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in list(self.open_outputs):
            with contextlib.suppress(ValueError):
                loop.remove_reader(fd)
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open_outputs.clear()
        if self._log is not None:
            self._log.close()
            self._log = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def read_log(path: str, *, tail_bytes: int | None = None) -> list[tuple[int, bytes]]:
    """The framed log as (stream, data) chunks, oldest first."""
    chunks: list[tuple[int, bytes]] = []
    for name in (f"{path}.1", path):
        try:
            with open(name, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        pos = 0
        while pos + LOG_HEADER.size <= len(raw):
            kind, size = LOG_HEADER.unpack_from(raw, pos)
            pos += LOG_HEADER.size
            chunks.append((kind, raw[pos : pos + size]))
            pos += size
    if tail_bytes is not None:
        total = 0
        for i in range(len(chunks) - 1, -1, -1):
            total += len(chunks[i][1])
            if total >= tail_bytes:
                return chunks[i:]
    return chunks
