"""Concurrency helpers of pulls and pushes: running jobs together (the first failure
cancels the rest), sharing the work on one blob between concurrent pulls of this process,
and borrowing or opening a session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from runtime.registry.auth import AuthStore
from runtime.registry.config import RegistryConfig
from runtime.registry.progress import Report
from runtime.registry.session import RegistrySession

logger = logging.getLogger(__name__)


async def run_all(jobs: list[Awaitable[None]]) -> None:
    """Run ``jobs`` concurrently; on the first failure cancel the others, wait for them to
    wind down (so nothing is half-written afterwards) and raise that failure."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.wait(tasks)
    errors = [task.exception() for task in tasks if not task.cancelled()]
    for error in errors:  # every one retrieved: no "never retrieved" warnings
        if error is not None:
            raise error


class _Job:
    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.listeners: list[Report] = []

    def report(self, phase: str, current: int, total: int) -> None:
        for listener in list(self.listeners):
            listener(phase, current, total)


_IN_FLIGHT: dict[tuple[asyncio.AbstractEventLoop, str, str], _Job] = {}


async def shared(
    scope: str, digest: str, work: Callable[[Report], Awaitable[None]], report: Report
) -> None:
    """``work(report)`` unless the same (store, digest) is already being worked on in this
    event loop: then wait for that one, seeing its progress. If the first worker is
    cancelled, a waiter takes over."""
    key = (asyncio.get_running_loop(), scope, digest)
    while (job := _IN_FLIGHT.get(key)) is not None:
        job.listeners.append(report)
        try:
            await asyncio.shield(job.future)
            return
        except asyncio.CancelledError:
            if not job.future.cancelled():
                raise  # we were cancelled, not the worker
        finally:
            job.listeners.remove(report)
    job = _Job()
    _IN_FLIGHT[key] = job
    job.listeners.append(report)
    try:
        await work(job.report)
    except asyncio.CancelledError:
        job.future.cancel()
        raise
    except BaseException as exc:
        job.future.set_exception(exc)
        job.future.exception()  # retrieved: no "never retrieved" warning without waiters
        raise
    else:
        job.future.set_result(None)
    finally:
        del _IN_FLIGHT[key]


@contextlib.asynccontextmanager
async def using_session(
    session: RegistrySession | None, config: RegistryConfig, auth: AuthStore | None
) -> AsyncIterator[RegistrySession]:
    """``session`` if given (left open), else a new one closed on exit."""
    if session is not None:
        yield session
        return
    async with RegistrySession(config, auth) as fresh:
        yield fresh
