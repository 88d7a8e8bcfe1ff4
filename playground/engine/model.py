"""The site's terms for the engine: the labels it puts on containers, what an instance is
made from (``InstanceSpec``), what it is told back (``ContainerState``, ``PullStep``,
``Usage``), the ``Engine`` and ``Terminal`` interfaces, and image references in the form
the engine lists them (``familiar``). Nothing here imports the runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

LABEL_SITE = "playground.site"
LABEL_LAB = "playground.lab"
LABEL_INSTANCE = "playground.instance"
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
