"""Progress of pulls and pushes: the events, a throttle for byte counts, and the bridge that
turns a coroutine reporting events into an async iterator of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from runtime.image.store import Image

logger = logging.getLogger(__name__)

# Layer phases, in order: waiting, downloading, verifying, extracting, done; or exists (the
# layer was in the store). Pushes: waiting, pushing, done, or exists (the registry had it).
# The last event of a pull has phase "pulled" and carries the image; of a push, "pushed".
PULL_PHASES = ("waiting", "downloading", "verifying", "extracting", "done", "exists", "pulled")
PUSH_PHASES = ("waiting", "pushing", "done", "exists", "pushed")
_INTERVAL = 0.1  # seconds between two byte-count events of one layer


@dataclass(frozen=True)
class PullEvent:
    id: str  # the layer's short digest (12 hex digits); the image's id for "pulled"
    phase: str
    current: int = 0  # bytes done
    total: int = 0  # bytes in all
    digest: str = ""  # the layer blob's digest; the manifest digest for "pulled"
    image: Image | None = None  # set on the final event only


@dataclass(frozen=True)
class PushEvent:
    id: str
    phase: str
    current: int = 0
    total: int = 0
    digest: str = ""  # the blob's digest; the manifest digest for "pushed"


def short_id(digest: str) -> str:
    return digest.partition(":")[2][:12]


Report = Callable[[str, int, int], None]
_E = TypeVar("_E")


class Throttle:
    """Forwards (phase, current, total) to ``report``, byte counts at most every 100 ms."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._last = 0.0

    def __call__(self, phase: str, current: int, total: int) -> None:
        now = time.monotonic()
        moving = phase in ("downloading", "pushing") and 0 < current < total
        if moving and now - self._last < _INTERVAL:
            return
        self._last = now
        self._report(phase, current, total)


class EventStream(Generic[_E]):
    """``async for event in EventStream(work)``: runs ``work(emit)`` as a task and yields
    what it emits; the task's error is raised after its last event. Leaving the loop early
    cancels the task."""

    def __init__(self, work: Callable[[Callable[[_E], None]], Awaitable[None]]) -> None:
        self._work = work

    async def __aiter__(self) -> AsyncIterator[_E]:
        queue: asyncio.Queue[tuple[_E] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                await self._work(lambda event: queue.put_nowait((event,)))
            finally:
                queue.put_nowait(None)

        task = asyncio.ensure_future(run())
        try:
            while (item := await queue.get()) is not None:
                yield item[0]
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
