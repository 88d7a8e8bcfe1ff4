"""The narrow, typed API through which the site (and the CLI) use the engine.

Frozen dataclasses in and out, only ``runtime.errors`` raised, asyncio streams for attach,
logs and events. Every call opens its own connection to the daemon's unix socket, so a
restart of the caller (daphne, Celery) leaves every container running; a restart of the
daemon leaves them running too.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from runtime.config import EngineConfig
from runtime.container.model import RunOptions
from runtime.errors import DaemonUnavailable
from runtime.supervisor import protocol

ContainerSpec = RunOptions

__all__ = [
    "AttachStream",
    "ContainerInfo",
    "ContainerSpec",
    "EngineClient",
    "Event",
    "PullProgress",
    "Stats",
]


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    image_id: str
    command: tuple[str, ...]
    status: str
    exit_code: int
    oom_killed: bool
    pid: int
    tty: bool
    created: str
    started_at: str
    finished_at: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, data: dict[str, Any]) -> ContainerInfo:
        state = data["State"]
        config = data["Config"]
        return cls(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            image=config["Image"],
            image_id=data["Image"],
            command=tuple([data["Path"], *data["Args"]]) if data["Path"] else (),
            status=state["Status"],
            exit_code=int(state["ExitCode"]),
            oom_killed=bool(state["OOMKilled"]),
            pid=int(state["Pid"]),
            tty=bool(config["Tty"]),
            created=data["Created"],
            started_at=state["StartedAt"],
            finished_at=state["FinishedAt"],
            labels=dict(config.get("Labels") or {}),
        )


@dataclass(frozen=True)
class Stats:
    id: str
    cpu_usage_ns: int
    memory_usage: int
    memory_limit: int | None
    pids_current: int
    pids_limit: int | None
    oom_kill_count: int


@dataclass(frozen=True)
class PullProgress:
    """One layer's progress (phase waiting, downloading, verifying, extracting, done or
    exists), or the end of the pull (phase "pulled", with ``image_id``)."""

    id: str
    phase: str
    current: int = 0
    total: int = 0
    image_id: str = ""


@dataclass(frozen=True)
class Event:
    type: str
    id: str
    time: float
    exit_code: int | None = None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class AttachStream:
    """Bytes in and out of a container's (or exec's) terminal or stdio.

    ``read()`` returns ``(stream, data)`` with stream 1 (stdout) or 2 (stderr), and None once
    the process has exited (then ``exit_code`` is set). The first chunk after attaching is
    the scrollback, followed by a marker that ``replayed`` reflects.
    """

    def __init__(self, conn: _Connection, tty: bool) -> None:
        self._conn = conn
        self.tty = tty
        self.exit_code: int | None = None
        self.replayed = False

    async def read(self) -> tuple[int, bytes] | None:
        while True:
            try:
                header = await self._conn.reader.readexactly(protocol.HEADER.size)
                kind, size = protocol.HEADER.unpack(header)
                payload = await self._conn.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            if kind == protocol.EXIT:
                with contextlib.suppress(ValueError):
                    self.exit_code = int(payload or b"0")
                return None
            if kind == protocol.REPLAY_DONE:
                self.replayed = True
                continue
            return kind, payload

    async def _send(self, kind: int, payload: bytes) -> None:
        self._conn.writer.write(protocol.frame(kind, payload))
        await self._conn.writer.drain()

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), protocol.MAX_FRAME):
            await self._send(protocol.STDIN, data[start : start + protocol.MAX_FRAME])

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(protocol.RESIZE, json.dumps({"rows": rows, "cols": cols}).encode())

    async def close_stdin(self) -> None:
        await self._send(protocol.CLOSE_STDIN, b"")

    async def close(self) -> None:
        self._conn.close()

    async def __aenter__(self) -> AttachStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class EngineClient:
    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or EngineConfig().socket_path

    async def _open(self, op: str, **fields: Any) -> tuple[_Connection, Any]:
        try:
            reader, writer = await asyncio.open_unix_connection(
                self.socket_path, limit=protocol.MAX_LINE
            )
        except OSError as exc:
            raise DaemonUnavailable(self.socket_path, exc.strerror or str(exc)) from exc
        conn = _Connection(reader, writer)
        writer.write(protocol.dumps({"op": op, **fields}))
        line = await reader.readline()
        if not line:
            conn.close()
            raise DaemonUnavailable(self.socket_path, "the daemon closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            conn.close()
            protocol.raise_error(reply.get("error") or {})
        return conn, reply.get("result")

    async def call(self, op: str, **fields: Any) -> Any:
        conn, result = await self._open(op, **fields)
        conn.close()
        return result

    # -- containers -------------------------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("ping")
        return result

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        return ContainerInfo.from_inspect(await self.call("create", options=spec.to_dict()))

    async def start(self, container_id: str) -> ContainerInfo:
        return ContainerInfo.from_inspect(await self.call("start", id=container_id))

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        info = await self.create(spec)
        return await self.start(info.id)

    async def attach(
        self, container_id: str, *, replay: bool = True, stdin: bool = True
    ) -> AttachStream:
        conn, result = await self._open("attach", id=container_id, replay=replay, stdin=stdin)
        return AttachStream(conn, bool(result["tty"]))

    async def exec(
        self,
        container_id: str,
        cmd: list[str],
        *,
        tty: bool = False,
        env: list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> AttachStream:
        """Start ``cmd`` in the container and attach to it."""
        result = await self.call(
            "exec_create", id=container_id, cmd=cmd, tty=tty, env=env, workdir=workdir, user=user
        )
        conn, _ = await self._open("attach", exec_id=result["exec_id"], replay=True, stdin=True)
        return AttachStream(conn, tty)

    async def resize(self, container_id: str, rows: int, cols: int) -> None:
        await self.call("resize", id=container_id, rows=rows, cols=cols)

    async def kill(self, container_id: str, signal: str | int = "KILL") -> None:
        await self.call("kill", id=container_id, signal=signal)

    async def stop(self, container_id: str, timeout: float = 10.0) -> None:
        await self.call("stop", id=container_id, timeout=timeout)

    async def remove(self, container_id: str, *, force: bool = False) -> str:
        result: str = await self.call("remove", id=container_id, force=force)
        return result

    async def wait(self, container_id: str) -> int:
        return int(await self.call("wait", id=container_id))

    async def inspect(self, container_id: str) -> ContainerInfo:
        return ContainerInfo.from_inspect(await self.call("inspect", id=container_id))

    async def inspect_raw(self, container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("inspect", id=container_id)
        return result

    async def list(self, *, all: bool = False) -> list[ContainerInfo]:
        return [ContainerInfo.from_inspect(d) for d in await self.call("list", all=all)]

    async def stats(self, container_id: str) -> Stats:
        data = await self.call("stats", id=container_id)
        return Stats(
            id=data["id"],
            cpu_usage_ns=int(data["cpu_usage_ns"]),
            memory_usage=int(data["memory_usage"]),
            memory_limit=data["memory_limit"],
            pids_current=int(data["pids_current"]),
            pids_limit=data["pids_limit"],
            oom_kill_count=int(data["oom_kill_count"]),
        )

    async def logs(
        self, container_id: str, *, follow: bool = False, tail: int | None = None
    ) -> AsyncIterator[tuple[int, bytes]]:
        conn, _ = await self._open("logs", id=container_id, follow=follow, tail=tail)
        stream = AttachStream(conn, False)
        try:
            while (chunk := await stream.read()) is not None:
                yield chunk
        finally:
            conn.close()

    async def events(self) -> AsyncIterator[Event]:
        conn, _ = await self._open("events")
        try:
            while line := await conn.reader.readline():
                data = json.loads(line)
                yield Event(data["type"], data["id"], data["time"], data.get("exit_code"))
        finally:
            conn.close()

    async def pull(self, ref: str, *, platform: str | None = None) -> AsyncIterator[PullProgress]:
        """Pull ``ref`` into the engine's image store, yielding progress as it goes."""
        conn, _ = await self._open("pull", ref=ref, platform=platform)
        try:
            while line := await conn.reader.readline():
                data = json.loads(line)
                if data.get("phase") == "error":
                    protocol.raise_error(data.get("error") or {})
                yield PullProgress(
                    id=data["id"],
                    phase=data["phase"],
                    current=int(data.get("current", 0)),
                    total=int(data.get("total", 0)),
                    image_id=data.get("image_id", ""),
                )
        finally:
            conn.close()

    async def images(self) -> builtins.list[dict[str, Any]]:
        result: builtins.list[dict[str, Any]] = await self.call("images")
        return result

    async def gc(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("gc")
        return result
