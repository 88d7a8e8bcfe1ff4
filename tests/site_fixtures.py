"""Fixtures of the site's tests: a fake engine and in-memory live state for unit tests; a real
redis-server on a free port, a real engine daemon with busybox, and Celery workers and daphne
servers as subprocesses for the tests that need them. Every process started here is stopped
by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playground.engine import FakeEngine
    from playground.live import MemoryLiveState
    from tests.integration.engine_fixtures import EngineProcess

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Stop one process we started, by its PID."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115
    try:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    finally:
        out.close()


# -- unit-test doubles ----------------------------------------------------------------------


@pytest.fixture
def fake_engine() -> Iterator[FakeEngine]:
    from playground import engine

    fake = engine.FakeEngine()
    engine.use(fake)
    yield fake
    engine.use(None)


@pytest.fixture
def memory_live() -> Iterator[MemoryLiveState]:
    from playground import live

    state = live.MemoryLiveState()
    live.use(state)
    yield state
    live.use(None)


@pytest.fixture
def catalog(db: None) -> None:
    """The seeded catalog, again: transactional tests empty every table after themselves."""
    import importlib

    from playground.catalog.models import Image

    seed = importlib.import_module("playground.catalog.migrations.0002_seed_images").SEED
    for entry in seed:
        Image.objects.update_or_create(slug=entry["slug"], defaults=entry)


# -- real services --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free port, without persistence."""
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = directory / "redis.log"
    proc = spawn(
        [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
        ],
        log,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, log, 10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture
def redis_live(redis_url: str) -> Iterator[None]:
    """The site's live state on the test's redis-server, emptied before each test."""
    import redis

    from playground import live

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    live.use(live.RedisLiveState(client))
    yield
    live.use(None)
    client.close()


@pytest.fixture(scope="session")
def engine_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """The real engine: a daemon in a fresh root with busybox bootstrapped."""
    from tests.integration.engine_fixtures import running_engine

    with running_engine(tmp_path_factory.mktemp("engine")) as process:
        yield process


@pytest.fixture
def real_engine(engine_process: EngineProcess) -> Iterator[str]:
    """The site talks to the real engine; yields the daemon's socket path."""
    from playground import engine

    engine.use(engine.RuntimeEngine(engine_process.socket_path))
    yield engine_process.socket_path
    engine.use(None)


def site_env(*, database: str, redis_url: str, engine_socket: str) -> dict[str, str]:
    """The environment of a site process (Celery worker, daphne) under test."""
    return {
        "DJANGO_SETTINGS_MODULE": "playground.settings",
        "PLAYGROUND_DEBUG": "1",
        "PLAYGROUND_DATABASE_PATH": database,
        "PLAYGROUND_REDIS_URL": redis_url,
        "PLAYGROUND_ENGINE_SOCKET": engine_socket,
        "PLAYGROUND_LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def running_daphne(env: dict[str, str], directory: Path) -> Iterator[int]:
    """The site's database migrated, then daphne serving it on a free loopback port (the
    port is yielded), its log in ``directory``; stopped by PID afterwards."""
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )
    port = free_port()
    log = directory / "daphne.log"
    daphne = spawn(
        [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "playground.asgi:application"],
        log,
        env,
    )
    try:
        wait_for_port(port, daphne, log, 30)
        yield port
    finally:
        stop(daphne)


@contextlib.contextmanager
def celery_worker(
    env: dict[str, str], log: Path, *, beat: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (with beat if asked) as a subprocess, ready when it says so."""
    cmd = [PYTHON, "-m", "celery", "-A", "playground", "worker", "--pool", "solo"]
    cmd += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    if beat:
        cmd += ["--beat", "--schedule", str(log.with_suffix(".schedule"))]
    proc = spawn(cmd, log, env)
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc, signal.SIGTERM, 20)
