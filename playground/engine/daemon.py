"""The real engine: ``RuntimeEngine`` drives the daemon through ``runtime.client`` (its unix
socket at ``settings.ENGINE_SOCKET``), and ``_RuntimeTerminal`` reads an attach stream
ahead for the WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator

from playground.engine.model import (
    LABEL_SITE,
    ContainerState,
    InstanceSpec,
    PullStep,
    Terminal,
    Usage,
    familiar,
)
from playground.engine.translation import _translated
from runtime import errors as rt
from runtime.client import AttachStream, ContainerInfo, ContainerSpec, EngineClient

logger = logging.getLogger(__name__)

READ_AHEAD = 16  # frames of output read ahead of the WebSocket
COALESCE = 256 * 1024  # bytes handed over at most per read
PRESENT_TTL = 2.0  # seconds a listing of the engine's images answers "is it here?"


def _state(info: ContainerInfo) -> ContainerState:
    return ContainerState(info.id, info.status, dict(info.labels), info.exit_code)


class _RuntimeTerminal:
    """An ``AttachStream`` read ahead by a task into a small bounded queue, so that ``read``
    can hand over everything already there in one piece: the PTY gives a few KiB per read,
    and each WebSocket message costs far more than its bytes. The bound keeps the engine's
    backpressure."""

    def __init__(self, stream: AttachStream, container_id: str) -> None:
        self._stream = stream
        self._id = container_id
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(READ_AHEAD)
        self._pulling: asyncio.Task[None] | None = None
        self.exit_code: int | None = None

    async def _pull(self) -> None:
        try:
            while (chunk := await self._stream.read()) is not None:
                await self._queue.put(chunk[1])
        finally:
            self.exit_code = self._stream.exit_code
            await self._queue.put(None)

    async def read(self) -> bytes | None:
        if self._pulling is None:
            self._pulling = asyncio.ensure_future(self._pull())
        data = await self._queue.get()
        if data is None:
            self._queue.put_nowait(None)  # every later read sees the end too
            return None
        parts, size = [data], len(data)
        while size < COALESCE and not self._queue.empty():
            more = self._queue.get_nowait()
            if more is None:
                self._queue.put_nowait(None)
                break
            parts.append(more)
            size += len(more)
        return b"".join(parts) if len(parts) > 1 else data

    async def write(self, data: bytes) -> None:
        with _translated(f"write to {self._id}"), contextlib.suppress(ConnectionError):
            await self._stream.write(data)

    async def resize(self, rows: int, cols: int) -> None:
        with _translated(f"resize {self._id}"), contextlib.suppress(ConnectionError):
            await self._stream.resize(rows, cols)

    async def close(self) -> None:
        if self._pulling is not None:
            self._pulling.cancel()
        await self._stream.close()


class RuntimeEngine:
    """The real engine, through ``runtime.client.EngineClient``."""

    def __init__(self, socket_path: str) -> None:
        self.client = EngineClient(socket_path)
        self._tags: frozenset[str] = frozenset()
        self._tags_at = -math.inf

    async def launch(self, spec: InstanceSpec) -> ContainerState:
        """Create and start a container; one that cannot start is removed."""
        created = await self.create(spec)
        return await self.start(created.container_id)

    async def create(self, spec: InstanceSpec) -> ContainerState:
        """A created container: a terminal may attach to it before it starts."""
        options = ContainerSpec(
            image=spec.image,
            cmd=spec.shell,
            env=("TERM=xterm-256color", "PS1=\\u@\\h:\\w\\$ "),
            hostname=spec.hostname,
            tty=True,
            stdin=True,
            memory=spec.memory,
            cpus=spec.cpus,
            pids_limit=spec.pids,
            network="none",
            name=spec.name,
            labels=tuple(sorted(spec.labels.items())),
        )
        with _translated(f"create {spec.name} from {spec.image}"):
            return _state(await self.client.create(options))

    async def start(self, container_id: str) -> ContainerState:
        """Start a created container; one that cannot start is removed."""
        with _translated(f"start {container_id}"):
            try:
                return _state(await self.client.start(container_id))
            except rt.ContainerRuntimeError:
                with contextlib.suppress(rt.ContainerRuntimeError):
                    await self.client.remove(container_id, force=True)
                raise

    async def restart(self, container_id: str) -> ContainerState:
        with _translated(f"restart {container_id}"):
            info = await self.client.inspect(container_id)
            if info.status == "running":
                await self.client.kill(container_id, "KILL")
                await asyncio.wait_for(self.client.wait(container_id), 10)
            return _state(await self.client.start(container_id))

    async def remove(self, container_id: str) -> None:
        """Idempotent: a container that is already gone is removed."""
        with _translated(f"remove {container_id}"):
            try:
                await self.client.remove(container_id, force=True)
            except rt.ContainerNotFound:
                logger.info("container %s was already gone", container_id)

    async def state(self, container_id: str) -> ContainerState:
        with _translated(f"inspect {container_id}"):
            try:
                return _state(await self.client.inspect(container_id))
            except rt.ContainerNotFound:
                return ContainerState(container_id, "missing")

    async def usage(self, container_id: str) -> Usage | None:
        with _translated(f"stats of {container_id}"):
            try:
                stats = await self.client.stats(container_id)
            except (rt.ContainerNotFound, rt.InvalidTransition, rt.CgroupError):
                return None
        return Usage(stats.cpu_usage_ns, stats.memory_usage, stats.memory_limit)

    async def containers(self) -> list[ContainerState]:
        """Every container of the engine that the site made (labelled ``playground.site``)."""
        with _translated("list containers"):
            infos = await self.client.list(all=True)
        return [_state(i) for i in infos if LABEL_SITE in i.labels]

    async def attach(self, container_id: str) -> Terminal:
        with _translated(f"attach to {container_id}"):
            stream = await self.client.attach(container_id, replay=True, stdin=True)
        return _RuntimeTerminal(stream, container_id)

    async def image_present(self, reference: str) -> bool:
        """Whether the engine has ``reference`` (by tag). A "yes" is remembered for
        ``PRESENT_TTL`` seconds, so starting labs from a cached image costs no listing; a
        "no" is always asked again, since a pull may just have finished."""
        wanted = familiar(reference)
        if wanted in self._tags and time.monotonic() - self._tags_at < PRESENT_TTL:
            return True
        with _translated("list images"):
            images = await self.client.images()
        self._tags = frozenset(tag for image in images for tag in image.get("repo_tags") or ())
        self._tags_at = time.monotonic()
        return wanted in self._tags

    async def pull(self, reference: str) -> AsyncIterator[PullStep]:
        """Pull ``reference`` into the engine, step by step; the last step is "pulled"."""
        pulled = False
        with _translated(f"pull {reference}"):
            try:
                async for progress in self.client.pull(reference):
                    pulled = pulled or progress.phase == "pulled"
                    yield PullStep(
                        progress.id,
                        progress.phase,
                        progress.current,
                        progress.total,
                        progress.image_id,
                    )
            except (OSError, ValueError) as exc:  # the daemon went away mid-stream
                raise rt.DaemonUnavailable(self.client.socket_path, str(exc)) from exc
            if not pulled:
                raise rt.DaemonUnavailable(self.client.socket_path, "the pull stopped short")
        self._tags_at = -math.inf
