"""Live state in Redis: lab expiry, instance status and CPU samples, presence (who is attached),
rate-limit counters, the capacity queue and the progress of image pulls.

Every key starts with ``pg:live:`` and has a TTL: losing Redis loses nothing, because the
reconciliation task (``labs.tasks.live_state_rebuild``) rebuilds it from the engine and the
database. ``MemoryLiveState`` is the in-process fake the unit tests use.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

import redis
from django.conf import settings

NS = "pg:live:"
STATUS_TTL = 3600
SAMPLE_TTL = 120
PRESENCE_TTL = 90
QUEUE_TTL = 3600
TICKET_TTL = 30
PULL_TTL = 900  # refreshed by every progress report of a pull


class LiveState(Protocol):
    def lab_expiry_set(self, lab_id: str, expires_at: float) -> None: ...
    def lab_expiry(self, lab_id: str) -> float | None: ...
    def lab_forget(self, lab_id: str, instance_ids: list[int]) -> None: ...
    def instance_status_set(self, instance_id: int, status: str) -> None: ...
    def instance_status(self, instance_id: int) -> str | None: ...
    def cpu_percent(self, instance_id: int, usage_ns: int, now: float) -> float | None: ...
    def presence_join(self, instance_id: int, client: str) -> None: ...
    def presence_leave(self, instance_id: int, client: str) -> None: ...
    def presence_count(self, instance_id: int) -> int: ...
    def rate_hit(self, scope: str, key: str, window: int) -> int: ...
    def queue_join(self, ticket: str) -> None: ...
    def queue_position(self, ticket: str) -> int | None: ...
    def queue_leave(self, ticket: str) -> None: ...
    def queue_length(self) -> int: ...
    def pull_progress_set(self, instance_id: int, progress: dict[str, Any]) -> None: ...
    def pull_progress(self, instance_id: int) -> dict[str, Any] | None: ...


def _percent(prev: str | None, usage_ns: int, now: float) -> float | None:
    if not prev:
        return None
    prev_ns, prev_t = prev.split(":")
    elapsed = now - float(prev_t)
    if elapsed <= 0:
        return None
    return max(0.0, (usage_ns - int(prev_ns)) / 1e9 / elapsed * 100.0)


class RedisLiveState:
    def __init__(self, client: redis.Redis) -> None:
        # redis-py annotates its sync and async clients with one union mypy cannot narrow.
        self.r: Any = client

    def lab_expiry_set(self, lab_id: str, expires_at: float) -> None:
        ttl = max(60, int(expires_at - time.time()) + 3600)
        self.r.set(f"{NS}lab:{lab_id}:expires", repr(expires_at), ex=ttl)

    def lab_expiry(self, lab_id: str) -> float | None:
        value = self.r.get(f"{NS}lab:{lab_id}:expires")
        return float(value) if value is not None else None

    def lab_forget(self, lab_id: str, instance_ids: list[int]) -> None:
        keys = [f"{NS}lab:{lab_id}:expires"]
        for iid in instance_ids:
            keys += [f"{NS}instance:{iid}:{part}" for part in ("status", "cpu", "pull")]
        self.r.delete(*keys)

    def instance_status_set(self, instance_id: int, status: str) -> None:
        self.r.set(f"{NS}instance:{instance_id}:status", status, ex=STATUS_TTL)

    def instance_status(self, instance_id: int) -> str | None:
        value = self.r.get(f"{NS}instance:{instance_id}:status")
        return value.decode() if value is not None else None

    def cpu_percent(self, instance_id: int, usage_ns: int, now: float) -> float | None:
        key = f"{NS}instance:{instance_id}:cpu"
        prev = self.r.getset(key, f"{usage_ns}:{now}")
        self.r.expire(key, SAMPLE_TTL)
        return _percent(prev.decode() if prev is not None else None, usage_ns, now)

    def presence_join(self, instance_id: int, client: str) -> None:
        key = f"{NS}presence:{instance_id}"
        pipe = self.r.pipeline()
        pipe.hset(key, client, repr(time.time()))
        pipe.expire(key, PRESENCE_TTL)
        pipe.execute()

    def presence_leave(self, instance_id: int, client: str) -> None:
        self.r.hdel(f"{NS}presence:{instance_id}", client)

    def presence_count(self, instance_id: int) -> int:
        seen = self.r.hvals(f"{NS}presence:{instance_id}")
        cutoff = time.time() - PRESENCE_TTL
        return sum(1 for value in seen if float(value) > cutoff)

    def rate_hit(self, scope: str, key: str, window: int) -> int:
        bucket = int(time.time()) // window
        name = f"{NS}rate:{scope}:{key}:{bucket}"
        pipe = self.r.pipeline()
        pipe.incr(name)
        pipe.expire(name, window)
        count, _ = pipe.execute()
        return int(count)

    def queue_join(self, ticket: str) -> None:
        pipe = self.r.pipeline()
        pipe.zadd(f"{NS}queue", {ticket: time.time()}, nx=True)
        pipe.expire(f"{NS}queue", QUEUE_TTL)
        pipe.set(f"{NS}queue:ticket:{ticket}", "1", ex=TICKET_TTL)
        pipe.execute()

    def queue_position(self, ticket: str) -> int | None:
        """1 for the head of the queue; None if the ticket is not queued. Asking keeps the
        ticket alive; tickets nobody asks about for ``TICKET_TTL`` seconds drop out."""
        if not self.r.expire(f"{NS}queue:ticket:{ticket}", TICKET_TTL):
            self.r.zrem(f"{NS}queue", ticket)
            return None
        tickets = [t.decode() for t in self.r.zrange(f"{NS}queue", 0, -1)]
        alive = self.r.mget([f"{NS}queue:ticket:{t}" for t in tickets]) if tickets else []
        dead = [t for t, a in zip(tickets, alive, strict=True) if a is None]
        if dead:
            self.r.zrem(f"{NS}queue", *dead)
        live = [t for t, a in zip(tickets, alive, strict=True) if a is not None]
        return live.index(ticket) + 1 if ticket in live else None

    def queue_leave(self, ticket: str) -> None:
        self.r.zrem(f"{NS}queue", ticket)
        self.r.delete(f"{NS}queue:ticket:{ticket}")

    def queue_length(self) -> int:
        """Tickets waiting, counting those whose holders left until their TTL runs out."""
        return int(self.r.zcard(f"{NS}queue"))

    def pull_progress_set(self, instance_id: int, progress: dict[str, Any]) -> None:
        """The latest progress of the pull an instance waits for (JSON-able), replaced whole."""
        key = f"{NS}instance:{instance_id}:pull"
        self.r.set(key, json.dumps(progress, separators=(",", ":")), ex=PULL_TTL)

    def pull_progress(self, instance_id: int) -> dict[str, Any] | None:
        value = self.r.get(f"{NS}instance:{instance_id}:pull")
        return dict(json.loads(value)) if value is not None else None


class MemoryLiveState:
    """The same behaviour in a dict, for tests that need no Redis."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.presence: dict[int, dict[str, float]] = {}
        self.rates: dict[str, int] = {}
        self.queue: list[str] = []

    def lab_expiry_set(self, lab_id: str, expires_at: float) -> None:
        self.values[f"lab:{lab_id}"] = repr(expires_at)

    def lab_expiry(self, lab_id: str) -> float | None:
        value = self.values.get(f"lab:{lab_id}")
        return float(value) if value is not None else None

    def lab_forget(self, lab_id: str, instance_ids: list[int]) -> None:
        self.values.pop(f"lab:{lab_id}", None)
        for iid in instance_ids:
            for part in ("status", "cpu", "pull"):
                self.values.pop(f"{part}:{iid}", None)

    def instance_status_set(self, instance_id: int, status: str) -> None:
        self.values[f"status:{instance_id}"] = status

    def instance_status(self, instance_id: int) -> str | None:
        return self.values.get(f"status:{instance_id}")

    def cpu_percent(self, instance_id: int, usage_ns: int, now: float) -> float | None:
        prev = self.values.get(f"cpu:{instance_id}")
        self.values[f"cpu:{instance_id}"] = f"{usage_ns}:{now}"
        return _percent(prev, usage_ns, now)

    def presence_join(self, instance_id: int, client: str) -> None:
        with self.lock:
            self.presence.setdefault(instance_id, {})[client] = time.time()

    def presence_leave(self, instance_id: int, client: str) -> None:
        with self.lock:
            self.presence.get(instance_id, {}).pop(client, None)

    def presence_count(self, instance_id: int) -> int:
        return len(self.presence.get(instance_id, {}))

    def rate_hit(self, scope: str, key: str, window: int) -> int:
        name = f"{scope}:{key}:{int(time.time()) // window}"
        with self.lock:
            self.rates[name] = self.rates.get(name, 0) + 1
            return self.rates[name]

    def queue_join(self, ticket: str) -> None:
        with self.lock:
            if ticket not in self.queue:
                self.queue.append(ticket)

    def queue_position(self, ticket: str) -> int | None:
        with self.lock:
            return self.queue.index(ticket) + 1 if ticket in self.queue else None

    def queue_leave(self, ticket: str) -> None:
        with self.lock:
            if ticket in self.queue:
                self.queue.remove(ticket)

    def queue_length(self) -> int:
        return len(self.queue)

    def pull_progress_set(self, instance_id: int, progress: dict[str, Any]) -> None:
        self.values[f"pull:{instance_id}"] = json.dumps(progress)

    def pull_progress(self, instance_id: int) -> dict[str, Any] | None:
        value = self.values.get(f"pull:{instance_id}")
        return dict(json.loads(value)) if value is not None else None


_state: LiveState | None = None


def state() -> LiveState:
    """The configured live state (Redis at ``settings.REDIS_URL``)."""
    global _state
    if _state is None:
        _state = RedisLiveState(redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5))
    return _state


def use(replacement: LiveState | None) -> None:
    """Swap the live state (tests); None goes back to Redis."""
    global _state
    _state = replacement
