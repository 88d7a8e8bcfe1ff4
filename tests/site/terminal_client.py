"""A terminal client for tests over Channels' WebsocketCommunicator: reads output until some
text appears, acknowledging it as a browser does."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import Client

from playground.asgi import application
from playground.labs.models import Lab


def start_lab(client: Client, image: str = "busybox") -> tuple[Lab, str]:
    response = client.post("/labs/new", {"image": image})
    assert response.status_code == 302, response.content
    lab = Lab.objects.get(id=response["Location"].split("/")[2])
    instance = lab.instances.get()
    return lab, f"/ws/labs/{lab.id}/instances/{instance.id}/terminal/"


def communicator(client: Client | None, path: str) -> Any:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if client is not None and "sessionid" in client.cookies:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


DSR = b"\x1b[6n"


class Terminal:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.output = b""
        self.texts: list[dict[str, Any]] = []
        self.closed: int | None = None

    async def _next(self, timeout: float) -> bool:
        """One message into ``output``/``texts``; False once the socket is closed."""
        message = await self.ws.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.closed = message.get("code")
            return False
        if message.get("bytes") is not None:
            data = message["bytes"]
            self.output += data
            ack = {"type": "ack", "bytes": len(data)}
            await self.ws.send_to(text_data=json.dumps(ack))
            if data.endswith(DSR):
                # busybox's shell asks where the cursor is after each prompt; a terminal
                # answers (the column just after the prompt), or the shell redraws it.
                line = self.output.rsplit(b"\n", 1)[-1].rsplit(b"\r", 1)[-1]
                column = len(line) - len(DSR) + 1
                await self.ws.send_to(bytes_data=f"\x1b[1;{column}R".encode())
        elif message.get("text") is not None:
            self.texts.append(json.loads(message["text"]))
        return True

    async def read_until(self, needle: bytes, timeout: float = 15.0) -> bytes:
        """Everything read up to and including ``needle``; later output stays buffered."""
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed is not None:
                raise AssertionError(f"{needle!r} not seen in {self.output[-800:]!r}")
            # receive_output cancels the application on a timeout: wait here instead.
            if await self.ws.receive_nothing(timeout=min(left, 0.2), interval=0.005):
                continue
            await self._next(left)
        end = self.output.index(needle) + len(needle)
        seen, self.output = self.output[:end], self.output[end:]
        return seen

    async def settle(self, quiet: float = 0.3) -> bytes:
        """Read until nothing comes for ``quiet`` seconds; return and forget what came."""
        while not await self.ws.receive_nothing(timeout=quiet, interval=0.005):
            if not await self._next(5):
                break
        seen, self.output = self.output, b""
        return seen

    async def until_closed(self, timeout: float = 15.0) -> int | None:
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            if not await self.ws.receive_nothing(timeout=0.2, interval=0.005):
                await self._next(deadline - time.monotonic())
        return self.closed

    async def type(self, text: str) -> None:
        await self.ws.send_to(bytes_data=text.encode())

    async def resize(self, rows: int, cols: int) -> None:
        await self.ws.send_to(text_data=json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    async def close(self) -> None:
        await self.ws.disconnect()
        await asyncio.sleep(0)


async def open_terminal(client: Client | None, path: str) -> Terminal:
    ws = communicator(client, path)
    connected, code = await ws.connect(timeout=15)
    assert connected, code
    return Terminal(ws)
