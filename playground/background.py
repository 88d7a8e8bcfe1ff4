"""Work a request starts and does not wait for: launching a container while the redirect,
the lab page and the terminal's WebSocket are on their way.

Under daphne, ``soon(fn)`` runs the synchronous ``fn`` in a worker thread of the server's
event loop, as Django runs a view: its ``async_to_sync`` calls (the engine, the channel
layer) run on that loop beside the consumers, and its database connection is closed when it
is done. The loop is the one the ASGI application is called on (``remember_loop`` wraps the
application in ``playground.asgi``). A process without one (a Celery worker, a management
command, the tests' HTTP client) runs ``fn`` at once, and its errors reach the caller.

Work that the server's shutdown interrupts leaves its instance "starting": the consumer
stops waiting after a bound, and reconciliation marks the instance failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from channels.db import DatabaseSyncToAsync

from playground.errors import ApplicationError

logger = logging.getLogger(__name__)

Receive = Callable[[], Any]
Send = Callable[[Any], Any]
Application = Callable[[dict[str, Any], Receive, Send], Any]

_loop: asyncio.AbstractEventLoop | None = None
# Scheduled work, referenced until done (the event loop keeps only weak references).
_pending: set[concurrent.futures.Future[None]] = set()


def remember_loop(application: Application) -> Application:
    """The ASGI ``application``, noting the event loop it is served on."""

    async def served(scope: dict[str, Any], receive: Receive, send: Send) -> Any:
        global _loop
        _loop = asyncio.get_running_loop()
        return await application(scope, receive, send)

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


async def _run(fn: Callable[[], None], what: str) -> None:
    try:
        await DatabaseSyncToAsync(fn, thread_sensitive=False)()
    except ApplicationError as exc:
        logger.warning("%s: %s", what, exc.log_message)
    except Exception:
        logger.exception("%s failed", what)


def soon(fn: Callable[[], None], what: str) -> None:
    """Run ``fn`` concurrently on the server's loop, or now when there is none. ``what``
    names the work in the log."""
    loop = _server_loop()
    if loop is None:
        fn()
        return
    future = asyncio.run_coroutine_threadsafe(_run(fn, what), loop)
    _pending.add(future)
    future.add_done_callback(_pending.discard)
