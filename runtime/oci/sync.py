"""The message channel between the runtime and the container's init while it is set up.

A SOCK_SEQPACKET socket pair carries one small JSON object per packet, so messages keep their
boundaries and a dead peer reads as end of file.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from runtime.errors import ContainerRuntimeError

MAX_MESSAGE = 65536


class SyncChannel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[SyncChannel, SyncChannel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.send(json.dumps({"type": kind, **fields}).encode())

    def recv(self) -> dict[str, Any]:
        raw = self.sock.recv(MAX_MESSAGE)
        if not raw:
            return {"type": "eof"}
        message: dict[str, Any] = json.loads(raw)
        return message

    def expect(self, kind: str, container_id: str) -> dict[str, Any]:
        """Receive the next message; an ``error`` message or end of file raises."""
        message = self.recv()
        if message["type"] == "error":
            raise ContainerRuntimeError(f"container {container_id!r}: {message['message']}")
        if message["type"] == "eof":
            raise ContainerRuntimeError(
                f"container {container_id!r}: init exited during set-up (waiting for {kind})"
            )
        if message["type"] != kind:
            raise ContainerRuntimeError(
                f"container {container_id!r}: init sent {message['type']!r}, expected {kind!r}"
            )
        return message

    def close(self) -> None:
        self.sock.close()
