"""Access to the configured engine: ``engine()`` (the daemon at ``settings.ENGINE_SOCKET``,
made on first use), ``use`` to swap it (tests), and ``blocking`` to call it from
synchronous code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from playground.engine.daemon import RuntimeEngine
from playground.engine.model import Engine

P = ParamSpec("P")
T = TypeVar("T")

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
