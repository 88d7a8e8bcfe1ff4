"""Work a request starts and does not wait for: launching a container while the redirect,
the lab page and the terminal's WebSocket are on their way.

Under daphne, ``soon(work)`` runs the coroutine function ``work`` on the server's event
loop, beside the consumers (the engine client and the channel layer are asyncio; database
work goes to worker threads with ``database_sync_to_async``). The loop is the one the ASGI
application is called on (``remember_loop`` wraps the application in ``playground.asgi``).
A process without one (a Celery worker, a management command, the tests' HTTP client) has
nothing to hand work to: ``available()`` says so, and the caller does the work itself.

Work on the loop can also tell coroutines of the same process waiting for it
(``notice``/``expect``), a Redis round trip sooner than the channel layer, which remains the
way to tell other processes. A notice is kept ``NOTICE_TTL`` seconds for those who come
just after it.

Work that the server's shutdown interrupts leaves its instance "starting": the consumer
stops waiting after a bound, and reconciliation marks the instance failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from playground.errors import ApplicationError

logger = logging.getLogger(__name__)

Application = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

_loop: asyncio.AbstractEventLoop | None = None
# Scheduled work, referenced until done (the event loop keeps only weak references).
_pending: set[concurrent.futures.Future[None]] = set()
# Coroutines of this process waiting for a notice, by key; and recent notices.
_expected: dict[str, set[asyncio.Future[str]]] = {}
_noticed: dict[str, tuple[float, str]] = {}
NOTICE_TTL = 10.0


def remember_loop(application: Application) -> Application:
    """The ASGI ``application``, noting the event loop it is served on."""

    async def served(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        global _loop
        _loop = asyncio.get_running_loop()
        await application(scope, receive, send)

    return served


def _server_loop() -> asyncio.AbstractEventLoop | None:
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return None
    try:
        if asyncio.get_running_loop() is loop:
            return None  # called from the loop itself: run at once rather than block it
    except RuntimeError:
        pass
    return loop


def available() -> bool:
    """Whether ``soon`` has a server's loop to run work on (from this thread)."""
    return _server_loop() is not None


async def _run(work: Callable[[], Awaitable[None]], what: str) -> None:
    try:
        await work()
    except ApplicationError as exc:
        logger.warning("%s: %s", what, exc.log_message)
    except Exception:
        logger.exception("%s failed", what)


def soon(work: Callable[[], Awaitable[None]], what: str) -> None:
    """Start ``work()`` on the server's loop and return; its errors are logged (``what``
    names it). Without a loop (see ``available``), ``RuntimeError``."""
    loop = _server_loop()
    if loop is None:
        raise RuntimeError(f"{what}: no server loop to run it on")
    future = asyncio.run_coroutine_threadsafe(_run(work, what), loop)
    _pending.add(future)
    future.add_done_callback(_pending.discard)


def expect(key: str) -> asyncio.Future[str]:
    """A future that ``notice(key, value)`` resolves, if it comes in this process. Call on
    the loop; cancel the future to stop waiting."""
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen = _noticed.get(key)
    if seen is not None and time.monotonic() - seen[0] < NOTICE_TTL:
        future.set_result(seen[1])
        return future
    waiting = _expected.setdefault(key, set())
    waiting.add(future)

    def forget(done: asyncio.Future[str]) -> None:
        waiting.discard(done)
        if not waiting and _expected.get(key) is waiting:
            del _expected[key]

    future.add_done_callback(forget)
    return future


def notice(key: str, value: str) -> None:
    """Resolve the futures that ``expect(key)`` made, and those it makes in the next
    ``NOTICE_TTL`` seconds (call on the loop)."""
    now = time.monotonic()
    for old in [k for k, (at, _) in _noticed.items() if now - at >= NOTICE_TTL]:
        del _noticed[old]
    _noticed[key] = (now, value)
    for future in list(_expected.get(key, ())):
        if not future.done():
            future.set_result(value)
