"""The engine daemon: a unix-socket API (``<root>/engine.sock``) over the ``Engine``.

One connection carries one request (a JSON line). Plain operations answer one line;
``attach``, ``exec_attach``, ``logs`` and ``events`` then stream (see ``protocol``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import errors
from runtime.config import EngineConfig
from runtime.container.model import RunOptions, inspect_record
from runtime.profile import DEFAULT_PROFILE, Profile
from runtime.supervisor import protocol
from runtime.supervisor.engine import Engine
from runtime.supervisor.session import Attacher, Session, read_log

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Daemon:
    def __init__(self, config: EngineConfig, profile: Profile = DEFAULT_PROFILE) -> None:
        self.config = config
        self.engine = Engine(config, profile)
        self.server: asyncio.AbstractServer | None = None

    def _lock(self) -> None:
        """One daemon per root: a second one would take over the socket and the keeper."""
        os.makedirs(self.config.root, mode=0o711, exist_ok=True)
        self._lock_fd = os.open(
            os.path.join(self.config.root, "daemon.pid.lock"),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errors.DaemonUnavailable(
                self.config.socket_path, "another daemon is already running for this root"
            ) from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, str(os.getpid()).encode())

    async def serve(self) -> None:
        self._lock()
        await self.engine.open()
        path = self.config.socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.server = await asyncio.start_unix_server(
            self._connection, path, limit=protocol.MAX_LINE
        )
        os.chmod(path, 0o600)
        logger.info("engine daemon listening on %s", path)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.server.close()
        self.engine.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            request = json.loads(line)
            op = str(request.get("op"))
            streaming = STREAMING.get(op)
            if streaming is not None:
                await streaming(self, request, reader, writer)
                return
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                raise errors.InvalidArgument("op", f"unknown operation {op!r}")
            result = await handler(request)
            writer.write(protocol.dumps({"ok": True, "result": result}))
        except errors.ContainerRuntimeError as exc:
            writer.write(protocol.dumps(protocol.error_reply(exc)))
        except (ValueError, KeyError, TypeError) as exc:
            bad = errors.InvalidArgument("request", f"malformed request: {exc}")
            writer.write(protocol.dumps(protocol.error_reply(bad)))
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except Exception as exc:  # the daemon must survive any single request
            logger.exception("request failed")
            failure = errors.ContainerRuntimeError(f"internal error: {exc}")
            writer.write(protocol.dumps(protocol.error_reply(failure)))
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
                writer.close()

    # -- containers -------------------------------------------------------------------------

    async def op_ping(self, req: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "root": self.config.root}

    async def op_create(self, req: dict[str, Any]) -> Any:
        record = await self.engine.create(RunOptions.from_dict(req["options"]))
        return inspect_record(record)

    async def op_start(self, req: dict[str, Any]) -> Any:
        return inspect_record(await self.engine.start(req["id"]))

    async def op_kill(self, req: dict[str, Any]) -> Any:
        await self.engine.kill(req["id"], req.get("signal", "KILL"))

    async def op_stop(self, req: dict[str, Any]) -> Any:
        await self.engine.stop(req["id"], float(req.get("timeout", 10)))

    async def op_remove(self, req: dict[str, Any]) -> Any:
        return await self.engine.remove(req["id"], force=bool(req.get("force")))

    async def op_wait(self, req: dict[str, Any]) -> Any:
        return await self.engine.wait(req["id"])

    async def op_inspect(self, req: dict[str, Any]) -> Any:
        return self.engine.inspect(req["id"])

    async def op_list(self, req: dict[str, Any]) -> Any:
        records = self.engine.containers.all()
        if not req.get("all"):
            records = [r for r in records if r.status.value == "running"]
        return [inspect_record(r) for r in records]

    async def op_stats(self, req: dict[str, Any]) -> Any:
        return self.engine.stats(req["id"])

    async def op_resize(self, req: dict[str, Any]) -> Any:
        _, session = self.engine.session(req["id"])
        session.resize(int(req["rows"]), int(req["cols"]))

    async def op_exec_create(self, req: dict[str, Any]) -> Any:
        record = await self.engine.exec(
            req["id"],
            list(req["cmd"]),
            tty=bool(req.get("tty")),
            env=req.get("env"),
            workdir=req.get("workdir"),
            user=req.get("user"),
        )
        return {"exec_id": record.id}

    async def op_exec_wait(self, req: dict[str, Any]) -> Any:
        return await self.engine.exec_wait(req["exec_id"])

    async def op_images(self, req: dict[str, Any]) -> Any:
        return [
            {"id": i.id, "repo_tags": list(i.repo_tags), "created": i.created, "size": i.size}
            for i in self.engine.images.list()
        ]

    async def op_gc(self, req: dict[str, Any]) -> Any:
        from runtime.supervisor import gc

        return await gc.collect(self.engine)

    # -- streaming --------------------------------------------------------------------------

    async def stream_attach(
        self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if req.get("exec_id"):
            _, session = self.engine.exec_session(req["exec_id"])
        else:
            _, session = self.engine.session(req["id"])
        writer.write(protocol.dumps({"ok": True, "result": {"tty": session.tty}}))
        attacher = session.attach(replay=bool(req.get("replay", True)))
        if session.exit_code is not None:
            session.finish(session.exit_code)
        await pump_attach(session, attacher, reader, writer, stdin=bool(req.get("stdin", True)))

    async def stream_logs(
        self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        record = self.engine.containers.resolve(req["id"])
        chunks = read_log(self.engine.containers.path(record.id, "container.log"))
        tail = req.get("tail")
        if tail is not None:
            chunks = tail_lines(chunks, int(tail))
        writer.write(protocol.dumps({"ok": True, "result": {"tty": record.options.tty}}))
        for kind, data in chunks:
            writer.write(protocol.frame(kind, data))
        session = self.engine.sessions.get(record.id)
        if req.get("follow") and session is not None and session.exit_code is None:
            attacher = session.attach(replay=False)
            await pump_attach(session, attacher, reader, writer, stdin=False)
            return
        writer.write(protocol.frame(protocol.EXIT, b""))
        await writer.drain()

    async def stream_events(
        self, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1024)
        self.engine.subscribers.append(queue)
        writer.write(protocol.dumps({"ok": True, "result": None}))
        try:
            while True:
                event = await queue.get()
                writer.write(protocol.dumps(event))
                await writer.drain()
        finally:
            self.engine.subscribers.remove(queue)


async def stream_pull(
    daemon: Daemon, req: dict[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Pull an image, streaming one JSON line per progress event; the last is "pulled"
    (with the image id) or "error" (with the error, as plain replies carry it)."""
    import os as _os

    from runtime.registry import AuthStore, load_config, pull

    root = daemon.config.root
    config = load_config(_os.path.join(root, "registries.json"))
    auth = AuthStore(_os.path.join(root, "auth.json"))
    writer.write(protocol.dumps({"ok": True, "result": None}))
    try:
        async for event in pull(
            daemon.engine.images,
            str(req["ref"]),
            platform=req.get("platform"),
            config=config,
            auth=auth,
        ):
            line: dict[str, Any] = {
                "id": event.id,
                "phase": event.phase,
                "current": event.current,
                "total": event.total,
                "digest": event.digest,
            }
            if event.image is not None:
                line["image_id"] = event.image.id
            writer.write(protocol.dumps(line))
            await writer.drain()
    except errors.ContainerRuntimeError as exc:
        writer.write(protocol.dumps({"phase": "error", **protocol.error_reply(exc)}))


STREAMING: dict[
    str,
    Callable[[Daemon, dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
] = {
    "attach": Daemon.stream_attach,
    "logs": Daemon.stream_logs,
    "events": Daemon.stream_events,
    "pull": stream_pull,
}


def tail_lines(chunks: list[tuple[int, bytes]], count: int) -> list[tuple[int, bytes]]:
    """The last ``count`` lines of the log, keeping stream tags."""
    if count < 0:
        return chunks
    out: list[tuple[int, bytes]] = []
    lines = 0
    for kind, data in reversed(chunks):
        pieces = data.splitlines(keepends=True)
        keep: list[bytes] = []
        for piece in reversed(pieces):
            if lines >= count:
                break
            keep.append(piece)
            lines += 1
        if keep:
            out.append((kind, b"".join(reversed(keep))))
        if lines >= count:
            break
    return list(reversed(out))


async def pump_attach(
    session: Session,
    attacher: Attacher,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    stdin: bool,
) -> None:
    """Frames out of the session to the client, and the client's frames into it."""
    inbound = asyncio.get_running_loop().create_task(_client_frames(session, reader, stdin))
    try:
        while True:
            frame = await attacher.queue.get()
            if frame is None:
                break
            writer.write(frame)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        session.detach(attacher)
        inbound.cancel()


async def _client_frames(session: Session, reader: asyncio.StreamReader, stdin: bool) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            header = await reader.readexactly(protocol.HEADER.size)
            kind, size = protocol.HEADER.unpack(header)
            if size > protocol.MAX_FRAME:
                return
            payload = await reader.readexactly(size)
            if kind == protocol.STDIN and stdin:
                session.write(payload)
            elif kind == protocol.RESIZE:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    size_req = json.loads(payload)
                    session.resize(int(size_req["rows"]), int(size_req["cols"]))
            elif kind == protocol.CLOSE_STDIN:
                session.close_stdin()
