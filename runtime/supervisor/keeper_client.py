"""The daemon's side of the keeper: starting it when it is not running, and asyncio calls
over its SOCK_SEQPACKET socket (replies may carry descriptors; exit events arrive unasked).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from runtime.errors import ContainerRuntimeError, DaemonUnavailable
from runtime.supervisor import keeper as keeper_module

logger = logging.getLogger(__name__)


def _python() -> str:
    return sys.executable


def ensure_keeper(root: str, *, timeout: float = 10.0) -> None:
    """Start the keeper for ``root`` unless one answers on its socket."""
    path = os.path.join(root, "keeper.sock")
    if _answers(path):
        return
    log = open(os.path.join(root, "keeper.log"), "ab")  # noqa: SIM115 - handed to the child
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    subprocess.Popen(
        [_python(), "-m", keeper_module.__name__, "--root", root],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        close_fds=True,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while not _answers(path):
        if time.monotonic() > deadline:
            raise DaemonUnavailable(path, "the keeper did not start; see keeper.log")
        time.sleep(0.02)


def _answers(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(2.0)
            sock.connect(path)
            sock.send(b'{"op": "ping", "seq": 0}')
            return bool(sock.recv(4096))
    except OSError:
        return False


class KeeperClient:
    def __init__(self, root: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        self.path = os.path.join(root, "keeper.sock")
        self.on_event = on_event
        self.sock: socket.socket | None = None
        self.seq = 0
        self.pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self.lock = asyncio.Lock()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(self.path)
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, keeper_module.MAX_PACKET, 16)
            except BlockingIOError:
                return
            except OSError as exc:
                data, fds = b"", []
                logger.error("keeper connection failed: %s", exc)
            if not data:
                self._lost()
                return
            message = json.loads(data)
            if "event" in message:
                for fd in fds:
                    os.close(fd)
                self.on_event(message)
                continue
            future = self.pending.pop(message.get("seq"), None)
            if future is not None and not future.done():
                future.set_result((message, fds))
            else:
                for fd in fds:
                    os.close(fd)

    def _lost(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for future in self.pending.values():
            if not future.done():
                future.set_exception(DaemonUnavailable(self.path, "the keeper went away"))
        self.pending.clear()

    async def call(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[int]]:
        """One request; raises the keeper's error as ContainerRuntimeError."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.seq += 1
        seq = self.seq
        future: asyncio.Future[tuple[dict[str, Any], list[int]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.pending[seq] = future
        payload = json.dumps({"op": op, "seq": seq, **fields}).encode()
        async with self.lock:
            self.sock.send(payload)
        reply, fds = await future
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            raise ContainerRuntimeError(str(reply.get("error")))
        return reply, fds
