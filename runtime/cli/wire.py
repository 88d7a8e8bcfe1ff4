"""A blocking client for the daemon's wire protocol, for the command line only.

``runtime.client.EngineClient`` is the API for the site; it is asyncio-based, and importing
asyncio costs more than the whole start-up budget of ``python -m runtime run --rm IMAGE true``.
This module speaks the same protocol (``runtime.supervisor.protocol``) over a plain socket and
returns the daemon's JSON as it comes (``inspect`` dicts), which is what the CLI prints anyway.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

from runtime.cli.status import mark_from_daemon
from runtime.errors import ContainerRuntimeError, DaemonUnavailable
from runtime.supervisor import protocol

RECV_SIZE = 65536
# Connection failures that mean "no daemon is listening", as opposed to one that misbehaved.
_NOT_LISTENING = (FileNotFoundError, ConnectionRefusedError)


class Channel:
    """One connection after its request: the reply line, then frames or JSON lines.

    ``read()`` returns ``(stream, data)`` and None at the end; an EXIT frame sets
    ``exit_code`` and a REPLAY_DONE frame sets ``replayed`` (as ``AttachStream`` does).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.exit_code: int | None = None
        self.replayed = False
        self.exited = False
        self.eof = False
        self.tty = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def fill(self) -> bool:
        """Receive what is there (blocking if nothing is); False at end of stream."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def readline(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > protocol.MAX_LINE or not self.fill():
                return b""
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def pending(self) -> Iterator[tuple[int, bytes]]:
        """The output frames already received; stops at EXIT (setting ``exited``)."""
        size = protocol.HEADER.size
        while not self.exited and len(self.buffer) >= size:
            kind, length = protocol.HEADER.unpack_from(self.buffer)
            if len(self.buffer) < size + length:
                return
            payload = bytes(self.buffer[size : size + length])
            del self.buffer[: size + length]
            if kind == protocol.EXIT:
                self.exit_code = _exit_code(payload)
                self.exited = True
            elif kind == protocol.REPLAY_DONE:
                self.replayed = True
            else:
                yield kind, payload

    def read(self) -> tuple[int, bytes] | None:
        """The next output frame, blocking; None once the process exited or the peer left."""
        while True:
            for frame in self.pending():
                return frame
            if self.exited or self.eof or not self.fill():
                return None

    @property
    def ended(self) -> bool:
        return self.exited or self.eof

    def send(self, kind: int, payload: bytes) -> None:
        """Send a frame; a peer that has already gone is no error here: the process has
        exited, and reading will show it."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(protocol.frame(kind, payload))

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), protocol.MAX_FRAME):
            self.send(protocol.STDIN, data[start : start + protocol.MAX_FRAME])

    def resize(self, rows: int, cols: int) -> None:
        self.send(protocol.RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    def close_stdin(self) -> None:
        self.send(protocol.CLOSE_STDIN, b"")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _exit_code(payload: bytes) -> int | None:
    try:
        return int(payload or b"0")
    except ValueError:
        return None


class WireClient:
    """The daemon's operations, one connection each. ``start_daemon`` is called once when
    nothing listens on the socket, and the connection is then retried."""

    def __init__(self, socket_path: str, *, start_daemon: Callable[[], None] | None = None) -> None:
        self.socket_path = socket_path
        self.start_daemon = start_daemon

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            if isinstance(exc, _NOT_LISTENING) and self.start_daemon is not None:
                start, self.start_daemon = self.start_daemon, None
                start()
                return self._connect()
            raise DaemonUnavailable(self.socket_path, exc.strerror or str(exc)) from exc
        return sock

    def open(self, op: str, **fields: Any) -> tuple[Channel, Any]:
        channel = Channel(self._connect())
        try:
            channel.sock.sendall(protocol.dumps({"op": op, **fields}))
            line = channel.readline()
        except OSError as exc:
            channel.close()
            raise DaemonUnavailable(self.socket_path, exc.strerror or str(exc)) from exc
        if not line:
            channel.close()
            raise DaemonUnavailable(self.socket_path, "the daemon closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            channel.close()
            try:
                protocol.raise_error(reply.get("error") or {})
            except ContainerRuntimeError as exc:
                raise mark_from_daemon(exc) from None
        return channel, reply.get("result")

    def call(self, op: str, **fields: Any) -> Any:
        channel, result = self.open(op, **fields)
        channel.close()
        return result

    # -- operations, named as in EngineClient ------------------------------------------------

    def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("ping")
        return result

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.call("create", options=options)
        return result

    def start(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("start", id=ref)
        return result

    def attach(self, ref: str, *, replay: bool = True, stdin: bool = True) -> Channel:
        channel, result = self.open("attach", id=ref, replay=replay, stdin=stdin)
        channel.tty = bool((result or {}).get("tty"))
        return channel

    def exec_create(self, ref: str, cmd: list[str], **options: Any) -> str:
        return str(self.call("exec_create", id=ref, cmd=cmd, **options)["exec_id"])

    def exec_attach(self, exec_id: str, *, tty: bool) -> Channel:
        channel, _ = self.open("attach", exec_id=exec_id, replay=True, stdin=True)
        channel.tty = tty
        return channel

    def exec_wait(self, exec_id: str) -> int:
        return int(self.call("exec_wait", exec_id=exec_id))

    def kill(self, ref: str, signal: str | int = "KILL") -> None:
        self.call("kill", id=ref, signal=signal)

    def stop(self, ref: str, timeout: float = 10.0) -> None:
        self.call("stop", id=ref, timeout=timeout)

    def remove(self, ref: str, *, force: bool = False) -> str:
        return str(self.call("remove", id=ref, force=force))

    def wait(self, ref: str) -> int:
        return int(self.call("wait", id=ref))

    def inspect(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("inspect", id=ref)
        return result

    def list(self, *, all: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("list", all=all)
        return result

    def stats(self, ref: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("stats", id=ref)
        return result

    def logs(self, ref: str, *, follow: bool = False, tail: int | None = None) -> Channel:
        channel, _ = self.open("logs", id=ref, follow=follow, tail=tail)
        return channel

    def gc(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("gc")
        return result
