"""A real engine for tests: a fresh root with busybox bootstrapped, a daemon (and its keeper)
started as processes, and everything they made removed afterwards, by PID."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class EngineProcess:
    root: Path
    daemon: subprocess.Popen[bytes]

    @property
    def socket_path(self) -> str:
        return str(self.root / "engine.sock")

    def cli(
        self, *args: str, timeout: float = 60, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "runtime", "--root", str(self.root), *args]
        return subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )

    def keeper_pid(self) -> int | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.settimeout(2)
                sock.connect(str(self.root / "keeper.sock"))
                sock.send(b'{"op": "ping", "seq": 1}')
                return int(json.loads(sock.recv(4096))["pid"])
        except OSError:
            return None

    def restart_daemon(self, sig: int = signal.SIGKILL) -> None:
        self.daemon.send_signal(sig)
        self.daemon.wait(10)
        self.daemon = start_daemon(self.root)


def start_daemon(root: Path, *flags: str) -> subprocess.Popen[bytes]:
    log = open(root / "daemon.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "--root", str(root), "daemon", *flags],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(root / "engine.sock"))
            sock.sendall(b'{"op":"ping"}\n')
            if sock.recv(100):
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((root / "daemon.log").read_text())
        time.sleep(0.05)


def bootstrap_busybox(root: Path) -> None:
    from runtime.config import EngineConfig
    from runtime.image.bootstrap import bootstrap_busybox as build
    from runtime.image.store import ImageStore

    build(ImageStore(EngineConfig(str(root)).images_dir))


@contextlib.contextmanager
def running_engine(root: Path, *daemon_flags: str) -> Iterator[EngineProcess]:
    root.mkdir(parents=True, exist_ok=True)
    bootstrap_busybox(root)
    engine = EngineProcess(root, start_daemon(root, *daemon_flags))
    try:
        yield engine
    finally:
        shutdown(engine)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from a thread whose event loop is running (Playwright's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def shutdown(engine: EngineProcess) -> None:
    from runtime.client import EngineClient

    async def remove_all() -> None:
        client = EngineClient(engine.socket_path)
        for info in await client.list(all=True):
            with contextlib.suppress(Exception):
                await client.remove(info.id, force=True)

    with contextlib.suppress(Exception):
        run_coroutine(remove_all())
    volumes = engine.cli("volume", "ls", "-q").stdout.split()
    if volumes:
        engine.cli("volume", "rm", "-f", *volumes)
    keeper = engine.keeper_pid()
    with contextlib.suppress(Exception):
        run_coroutine(_gc(engine))
    engine.daemon.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        engine.daemon.wait(10)
    if engine.daemon.poll() is None:
        engine.daemon.kill()
        engine.daemon.wait()
    if keeper is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(keeper, signal.SIGKILL)


async def _gc(engine: EngineProcess) -> None:
    from runtime.client import EngineClient

    await EngineClient(engine.socket_path).gc()
