"""The fake engine for unit tests: ``FakeEngine`` keeps containers in memory
(``FakeContainer``), attaches ``FakeTerminal``s that echo what is written, and can play
the failure modes (an engine that is down, slow, or has no such image).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from playground.engine.model import (
    ContainerState,
    InstanceSpec,
    PullStep,
    Terminal,
    Usage,
    familiar,
)
from playground.engine.translation import translate
from playground.errors import ApplicationError
from runtime import errors as rt


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
