"""The live state on a real redis-server: namespaced keys, every one with a TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from playground import live

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def state(client: redis.Redis) -> live.RedisLiveState:
    return live.RedisLiveState(client)


def test_every_key_is_namespaced_and_expires(
    client: redis.Redis, state: live.RedisLiveState
) -> None:
    state.lab_expiry_set("lab1", time.time() + 600)
    state.instance_status_set(7, "running")
    state.cpu_percent(7, 1000, time.time())
    state.presence_join(7, "chan1")
    state.rate_hit("anon-start", "10.0.0.1", 3600)
    state.queue_join("t1")
    keys = client.keys("*")
    assert len(keys) == 7
    for key in keys:
        assert key.startswith(live.NS.encode())
        assert client.ttl(key) > 0, key


def test_rate_hits_count_up_within_the_window(state: live.RedisLiveState) -> None:
    assert [state.rate_hit("s", "a", 3600) for _ in range(3)] == [1, 2, 3]
    assert state.rate_hit("s", "b", 3600) == 1


def test_the_queue_keeps_order_and_drops_those_who_left(
    client: redis.Redis, state: live.RedisLiveState
) -> None:
    for ticket in ("a", "b", "c"):
        state.queue_join(ticket)
    assert [state.queue_position(t) for t in ("a", "b", "c")] == [1, 2, 3]
    client.delete(f"{live.NS}queue:ticket:a")  # "a" stopped polling: its ticket expired
    assert state.queue_position("c") == 2
    assert state.queue_position("a") is None
    state.queue_leave("b")
    assert state.queue_position("c") == 1
    assert state.queue_length() == 1


def test_presence_counts_the_attached_clients(state: live.RedisLiveState) -> None:
    state.presence_join(3, "x")
    state.presence_join(3, "y")
    state.presence_leave(3, "x")
    assert state.presence_count(3) == 1


def test_cpu_is_a_percentage_between_two_samples(state: live.RedisLiveState) -> None:
    assert state.cpu_percent(1, 0, 100.0) is None
    assert state.cpu_percent(1, 500_000_000, 101.0) == pytest.approx(50.0)
