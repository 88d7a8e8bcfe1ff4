"""The site's one door to the container engine: the only module that imports
``runtime.client``. It speaks in the site's terms (launch an instance, attach a terminal,
pull an image, tell whether one is here), and turns every runtime error into an
``ApplicationError``.

``Engine`` is the interface; ``RuntimeEngine`` is the real one (the daemon's unix socket at
``settings.ENGINE_SOCKET``); ``FakeEngine`` stands in for it in unit tests, including the
failure modes (an engine that is down, slow, or has no such image).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from playground.errors import ApplicationError
from runtime import errors as rt
from runtime.client import AttachStream, ContainerInfo, ContainerSpec, EngineClient

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

LABEL_SITE = "playground.site"
READ_AHEAD = 16  # frames of output read ahead of the WebSocket
COALESCE = 256 * 1024  # bytes handed over at most per read
LABEL_LAB = "playground.lab"
LABEL_INSTANCE = "playground.instance"
PRESENT_TTL = 2.0  # seconds a listing of the engine's images answers "is it here?"
_DOCKER_HUB = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def familiar(reference: str) -> str:
    """``reference`` as the engine lists its tags, in Docker's familiar form: ``busybox`` is
    ``busybox:latest``, ``docker.io/library/debian:12`` is ``debian:12``."""
    name, at, digest = reference.partition("@")
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    for prefix in _DOCKER_HUB:
        if name.startswith(prefix):
            name = name.removeprefix(prefix)
            break
    return name + at + digest


@dataclass(frozen=True)
class InstanceSpec:
    image: str
    name: str
    hostname: str
    shell: tuple[str, ...]
    labels: dict[str, str]
    memory: int | None = None
    cpus: float | None = None
    pids: int | None = None


@dataclass(frozen=True)
class ContainerState:
    container_id: str
    status: str  # created, running, exited, removing, or "missing" when the engine has none
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int = 0


@dataclass(frozen=True)
class PullStep:
    """One step of a pull: a layer's phase (waiting, downloading, verifying, extracting, done
    or exists) and bytes, or the end of the pull (phase "pulled", with ``image_id``)."""

    layer: str
    phase: str
    current: int = 0
    total: int = 0
    image_id: str = ""


@dataclass(frozen=True)
class Usage:
    cpu_ns: int
    memory: int
    memory_limit: int | None


class Terminal(Protocol):
    """An attached terminal: scrollback first, then live output; None once the shell exits."""

    exit_code: int | None

    async def read(self) -> bytes | None: ...
    async def write(self, data: bytes) -> None: ...
    async def resize(self, rows: int, cols: int) -> None: ...
    async def close(self) -> None: ...


class Engine(Protocol):
    async def launch(self, spec: InstanceSpec) -> ContainerState: ...
    async def create(self, spec: InstanceSpec) -> ContainerState: ...
    async def start(self, container_id: str) -> ContainerState: ...
    async def restart(self, container_id: str) -> ContainerState: ...
    async def remove(self, container_id: str) -> None: ...
    async def state(self, container_id: str) -> ContainerState: ...
    async def usage(self, container_id: str) -> Usage | None: ...
    async def containers(self) -> list[ContainerState]: ...
    async def attach(self, container_id: str) -> Terminal: ...
    async def image_present(self, reference: str) -> bool: ...
    def pull(self, reference: str) -> AsyncIterator[PullStep]: ...


def _translate_image(exc: rt.ContainerRuntimeError, log: str) -> ApplicationError | None:
    """Errors of pulling an image, as sentences; None for the others."""
    if isinstance(exc, rt.RegistryUnreachable):
        return ApplicationError(
            "The image registry could not be reached. Try again later.",
            log,
            temporary=exc.temporary,
        )
    if isinstance(exc, rt.RegistryError):
        if exc.status in (401, 403):
            return ApplicationError("The image registry refused to send this image.", log)
        if exc.status == 404 or exc.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
            return ApplicationError("The image registry has no such image.", log)
        return ApplicationError(
            "The image registry failed to send the image.", log, temporary=exc.temporary
        )
    if isinstance(exc, rt.NoMatchingPlatform):
        return ApplicationError(f"The image {exc.reference} has no version for this host.", log)
    if isinstance(exc, rt.InvalidReference):
        return ApplicationError(f"The image name {exc.reference} is not valid.", log)
    if isinstance(exc, rt.DigestMismatch | rt.BlobSizeMismatch | rt.InvalidLayer | rt.InvalidImage):
        return ApplicationError("The image could not be downloaded intact.", log)
    return None


def translate(exc: rt.ContainerRuntimeError, what: str) -> ApplicationError:
    """A runtime error as a sentence for people, keeping the engine's message for the log."""
    log = f"{what}: {exc}"
    if isinstance(exc, rt.DaemonUnavailable):
        return ApplicationError(
            "The container engine is not answering. Try again in a moment.", log, temporary=True
        )
    if isinstance(exc, rt.ImageNotFound):
        return ApplicationError(f"The image {exc.reference} is not on this host yet.", log)
    if isinstance(exc, rt.ContainerNotFound):
        return ApplicationError("This instance no longer exists.", log)
    if isinstance(exc, rt.InvalidTransition):
        return ApplicationError(f"The instance is {exc.current}: it cannot {exc.wanted}.", log)
    image_error = _translate_image(exc, log)
    if image_error is not None:
        return image_error
    return ApplicationError("The container engine could not do that.", log, temporary=exc.temporary)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except rt.ContainerRuntimeError as exc:
        raise translate(exc, what) from exc


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


# -- the fake -------------------------------------------------------------------------------


class FakeTerminal:
    """Echoes what is written, like a terminal in cooked mode, after a scrollback replay."""

    def __init__(self, container: FakeContainer) -> None:
        self.container = container
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.exit_code: int | None = None
        self.queue.put_nowait(bytes(container.scrollback) or b"# ")
        container.terminals.append(self)

    async def read(self) -> bytes | None:
        data = await self.queue.get()
        if data is None:
            self.exit_code = self.container.exit_code
        return data

    async def write(self, data: bytes) -> None:
        self.container.output(data)

    async def resize(self, rows: int, cols: int) -> None:
        self.container.size = (rows, cols)

    async def close(self) -> None:
        if self in self.container.terminals:
            self.container.terminals.remove(self)


@dataclass
class FakeContainer:
    id: str
    spec: InstanceSpec
    status: str = "running"
    exit_code: int = 0
    size: tuple[int, int] = (24, 80)
    scrollback: bytearray = field(default_factory=bytearray)
    terminals: list[FakeTerminal] = field(default_factory=list)

    def output(self, data: bytes) -> None:
        self.scrollback += data
        for terminal in self.terminals:
            terminal.queue.put_nowait(data)

    def exit(self, code: int) -> None:
        self.status = "exited"
        self.exit_code = code
        for terminal in self.terminals:
            terminal.queue.put_nowait(None)


class FakeEngine:
    """An in-memory engine. ``fail`` makes every call (or those named in ``fail_ops``) raise
    that runtime error; ``delay`` makes every call that long. ``registry`` holds the images
    a pull can fetch (reference: layer sizes); ``pull_error`` makes a pull fail after its
    first layer."""

    def __init__(self, images: tuple[str, ...] = ("busybox:latest", "debian:bookworm")) -> None:
        self.images = set(images)
        self.registry: dict[str, tuple[int, ...]] = {"alpine:3": (3 << 20, 1024)}
        self.pull_error: rt.ContainerRuntimeError | None = None
        self.by_id: dict[str, FakeContainer] = {}
        self.fail: rt.ContainerRuntimeError | None = None
        self.fail_ops: set[str] | None = None
        self.delay = 0.0
        self.calls: list[tuple[str, str]] = []
        self._next = 0

    async def _enter(self, op: str, arg: str) -> None:
        self.calls.append((op, arg))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None and (self.fail_ops is None or op in self.fail_ops):
            raise translate(self.fail, f"{op} {arg}")

    def _get(self, container_id: str) -> FakeContainer:
        try:
            return self.by_id[container_id]
        except KeyError:
            raise translate(rt.ContainerNotFound(container_id), "fake") from None

    async def launch(self, spec: InstanceSpec) -> ContainerState:
        created = await self.create(spec)
        return await self.start(created.container_id)

    async def create(self, spec: InstanceSpec) -> ContainerState:
        await self._enter("launch", spec.name)  # the first step of a launch
        if spec.image not in self.images:
            raise translate(rt.ImageNotFound(spec.image), f"launch {spec.name}")
        self._next += 1
        container = FakeContainer(f"{self._next:064x}", spec, status="created")
        self.by_id[container.id] = container
        return ContainerState(container.id, "created", dict(spec.labels))

    async def start(self, container_id: str) -> ContainerState:
        container = self._get(container_id)
        try:
            await self._enter("start", container_id)
        except ApplicationError:  # as the real one: a container that cannot start is removed
            self.by_id.pop(container_id, None)
            container.exit(127)
            raise
        container.status = "running"
        return ContainerState(container.id, "running", dict(container.spec.labels))

    async def restart(self, container_id: str) -> ContainerState:
        await self._enter("restart", container_id)
        container = self._get(container_id)
        container.exit(137)
        container.status = "running"
        return ContainerState(container.id, "running", dict(container.spec.labels))

    async def remove(self, container_id: str) -> None:
        await self._enter("remove", container_id)
        container = self.by_id.pop(container_id, None)
        if container is not None:
            container.exit(137)

    async def state(self, container_id: str) -> ContainerState:
        await self._enter("state", container_id)
        container = self.by_id.get(container_id)
        if container is None:
            return ContainerState(container_id, "missing")
        labels = dict(container.spec.labels)
        return ContainerState(container.id, container.status, labels, container.exit_code)

    async def usage(self, container_id: str) -> Usage | None:
        await self._enter("usage", container_id)
        return Usage(1_000_000, 4 << 20, 512 << 20) if container_id in self.by_id else None

    async def containers(self) -> list[ContainerState]:
        await self._enter("containers", "")
        return [await self.state(c) for c in list(self.by_id)]

    async def attach(self, container_id: str) -> Terminal:
        await self._enter("attach", container_id)
        container = self._get(container_id)
        if container.status not in ("created", "running"):
            raise translate(rt.InvalidTransition(container_id, container.status, "attach"), "")
        return FakeTerminal(container)

    async def image_present(self, reference: str) -> bool:
        await self._enter("image_present", reference)
        return familiar(reference) in self.images

    async def pull(self, reference: str) -> AsyncIterator[PullStep]:
        await self._enter("pull", reference)
        sizes = self.registry.get(familiar(reference))
        if sizes is None:
            raise translate(rt.RegistryError(404, "MANIFEST_UNKNOWN", reference), "fake pull")
        layers = [(f"{n + 1:012x}", size) for n, size in enumerate(sizes)]
        for layer, size in layers:
            yield PullStep(layer, "waiting", 0, size)
        for number, (layer, size) in enumerate(layers):
            for phase, current in (("downloading", size // 2), ("downloading", size)):
                yield PullStep(layer, phase, current, size)
            if self.pull_error is not None and number == 0:
                raise translate(self.pull_error, f"fake pull {reference}")
            for phase in ("verifying", "extracting", "done"):
                yield PullStep(layer, phase, size, size)
        self.images.add(familiar(reference))
        yield PullStep("f" * 12, "pulled", image_id="sha256:" + "f" * 64)


# -- access ---------------------------------------------------------------------------------

_engine: Engine | None = None


def engine() -> Engine:
    """The configured engine (the daemon at ``settings.ENGINE_SOCKET``)."""
    global _engine
    if _engine is None:
        _engine = RuntimeEngine(settings.ENGINE_SOCKET)
    return _engine


def use(replacement: Engine | None) -> None:
    """Swap the engine (tests); None goes back to the daemon."""
    global _engine
    _engine = replacement


def blocking(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    """An engine call from synchronous code (services, Celery tasks)."""
    return async_to_sync(fn)
