"""The terminal WebSocket: ``/ws/labs/<lab>/instances/<instance>/terminal/``.

Frames, browser to server: binary = keystrokes and pastes (bytes for the PTY); text = one
small JSON control message, ``{"type": "resize", "rows": R, "cols": C}`` or
``{"type": "ack", "bytes": N}`` (N bytes of output were written to the screen). Server to
browser: binary = PTY output (the scrollback first, on every connection); text =
``{"type": "exit", "code": N}`` or ``{"type": "ended", "reason": "..."}`` before a close.

Waiting: an instance whose container is being launched ("starting") or whose image is being
pulled ("pulling") is accepted and waited for: the server sends
``{"type": "waiting", "status": S}``, then for a pull ``{"type": "pull", ...}`` frames (each
layer's phase and bytes, see ``playground.labs.progress``; the first from Redis, so a page
loaded mid-pull shows where it is), then ``{"type": "ready"}`` and the scrollback, or
``{"type": "failed", "message": "..."}`` and a close. The channel layer's notices
("instance.ready", "instance.failed", "instance.pull") wake the consumer; it asks the
database again every ``RECHECK`` seconds in case one was missed, and gives up on a launch
after ``READY_TIMEOUT`` (a pull is bounded by its task's time limit).

Flow control: at most ``WINDOW`` bytes of output are sent and not yet acknowledged; then the
consumer stops reading from the engine, whose bounded queues stop reading the PTY, so a
flood (``cat /dev/urandom``) blocks in the container instead of filling memory here or in
daphne's write buffers.

Sizes: the last client to resize or type sets the PTY's size ("last active client wins").

Close codes: the handshake is refused (HTTP 403) when the lab is not the requester's, or the
instance is not active; after accepting: 4001 the shell exited, 4410 the lab ended,
4411 the instance was removed, 4412 the instance failed to start, 4404 it did not start in
time, 1009 a frame was too big, 1011 the engine failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from playground import background, engine, live
from playground.errors import ApplicationError, PermissionDenied
from playground.labs import selectors, services
from playground.labs.models import InstanceStatus
from playground.labs.policy import Owner

logger = logging.getLogger(__name__)

MAX_INPUT = 1 << 20
MAX_CONTROL = 1024
WINDOW = 1 << 20
MAX_ROWS = 500
MAX_COLS = 1000
HEARTBEAT = 30.0
RECHECK = 2.0
READY_TIMEOUT = 60.0

CLOSE_EXITED = 4001
CLOSE_ENDED = 4410
CLOSE_REMOVED = 4411
CLOSE_FAILED = 4412
CLOSE_FORBIDDEN = 4403
CLOSE_UNAVAILABLE = 4404
CLOSE_TOO_BIG = 1009
CLOSE_ENGINE = 1011

# The size each instance's PTY was last given by this process.
_applied_sizes: dict[int, tuple[int, int]] = {}


def parse_control(text: str) -> tuple[str, int, int] | None:
    """``("resize", rows, cols)`` or ``("ack", n, 0)``; None for anything else."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "resize":
        rows, cols = message.get("rows"), message.get("cols")
        # type() is int, not isinstance: JSON's true and false are not sizes.
        if (
            type(rows) is int
            and type(cols) is int
            and 1 <= rows <= MAX_ROWS
            and 1 <= cols <= MAX_COLS
        ):
            return "resize", rows, cols
        return None
    if kind == "ack":
        count = message.get("bytes")
        if type(count) is int and 0 <= count <= 1 << 31:
            return "ack", count, 0
    return None


class TerminalConsumer(AsyncWebsocketConsumer):
    terminal: engine.Terminal | None = None
    pump: asyncio.Task[None] | None = None
    heartbeat: asyncio.Task[None] | None = None
    waiter: asyncio.Task[None] | None = None
    expected: asyncio.Future[str] | None = None
    instance_id: int = 0
    container_id: str = ""  # the container attached to, or found unattachable
    groups_joined: tuple[str, ...] = ()
    ready_container: str | None = None

    async def dispatch(self, message: Any) -> None:
        """Keystrokes and control frames go straight to their handler: Channels' dispatch
        first closes stale database connections in its sync thread, a thread hop per
        keystroke (about a millisecond), and these handlers never touch the database."""
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    def _owner(self) -> Owner:
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            return Owner(user_id=user.pk, session_key=None)
        session = self.scope.get("session")
        return Owner(user_id=None, session_key=getattr(session, "session_key", None))

    async def connect(self) -> None:
        route: dict[str, Any] = self.scope["url_route"]["kwargs"]
        lab_id: uuid.UUID = route["lab_id"]
        try:
            instance = await database_sync_to_async(selectors.instance_for_terminal)(
                lab_id=lab_id, instance_id=route["instance_id"], owner=self._owner()
            )
            if instance.container_id:
                self.terminal = await engine.engine().attach(instance.container_id)
        except PermissionDenied as exc:
            logger.info("terminal refused: %s", exc.log_message)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        except ApplicationError as exc:
            logger.info("terminal unavailable: %s", exc.log_message)
            await self.close(code=CLOSE_UNAVAILABLE)
            return
        self.instance_id = instance.id
        # A new client is the active one: its first resize applies even if the size is
        # the one this process set last (the shell may have been restarted meanwhile).
        _applied_sizes.pop(instance.id, None)
        self.unacked = 0
        self.window = asyncio.Event()
        self.window.set()
        self.size: tuple[int, int] | None = None
        self.wakeup = asyncio.Event()
        # Listening before the instance is asked about again: no notice falls in between.
        if self.terminal is None:
            self.expected = background.expect(services.instance_ready_key(instance.id))
            self.expected.add_done_callback(self._launched_here)
        self.groups_joined = (services.lab_group(lab_id), services.instance_group(instance.id))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        if self.terminal is not None:
            self._start_pumping()
        else:
            self.waiter = asyncio.ensure_future(self._wait_until_ready())

    def _start_pumping(self) -> None:
        self.pump = asyncio.ensure_future(self._pump())
        if self.heartbeat is None:
            self.heartbeat = asyncio.ensure_future(self._heartbeat())

    def _launched_here(self, expected: asyncio.Future[str]) -> None:
        """The launch ran in this process: its notice comes before the channel layer's."""
        if not expected.cancelled():
            self.ready_container = expected.result()
            self.wakeup.set()

    async def _wait_until_ready(self) -> None:
        """Wait for the instance's container, then attach to it (see the module's doc)."""
        clock = asyncio.get_running_loop().time
        deadline, told = clock() + READY_TIMEOUT, ""
        while True:
            self.wakeup.clear()
            container_id = self.ready_container
            if container_id is None:
                ready = await database_sync_to_async(selectors.instance_readiness)(
                    instance_id=self.instance_id
                )
                if ready.status in (InstanceStatus.FAILED, InstanceStatus.LOST):
                    await self._tell_failed(ready.error)
                    return
                if ready.status == InstanceStatus.REMOVED:
                    if await self._gone() in ("exited", "pending"):  # not told yet
                        await self.close(code=CLOSE_UNAVAILABLE)
                    return
                container_id = ready.container_id or None
                if container_id is None and ready.status != told:
                    deadline, told = clock() + READY_TIMEOUT, ready.status
                    await self._send_json({"type": "waiting", "status": ready.status})
                    if ready.pull is not None:
                        await self._send_json({"type": "pull", **ready.pull})
            fresh = container_id is not None and container_id != self.container_id
            if fresh and await self._attach(str(container_id)):
                return
            self.ready_container = None
            if told != InstanceStatus.PULLING and clock() > deadline:
                logger.info("instance %s did not start in time", self.instance_id)
                await self.close(code=CLOSE_UNAVAILABLE)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), RECHECK)

    async def _attach(self, container_id: str) -> bool:
        """Attach and pump; True unless the container is gone while the instance is still
        pending (it failed to start, and the database does not say so yet): then waiting
        goes on, and this container is not tried again."""
        if self.expected is not None:
            self.expected.cancel()
        self.container_id = container_id
        try:
            self.terminal = await engine.engine().attach(container_id)
        except ApplicationError as exc:
            logger.info("terminal of instance %s: %s", self.instance_id, exc.log_message)
            why = await self._gone()
            if why == "exited":
                await self.close(code=CLOSE_ENGINE)
            return why != "pending"
        await self._send_json({"type": "ready"})
        self._start_pumping()
        await self._take_size()
        return True

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def _pump(self) -> None:
        assert self.terminal is not None
        try:
            while True:
                await self.window.wait()
                data = await self.terminal.read()
                if data is None:
                    break
                self.unacked += len(data)
                if self.unacked >= WINDOW:
                    self.window.clear()
                await self.send(bytes_data=data)
        except ApplicationError as exc:
            logger.warning("terminal of instance %s: %s", self.instance_id, exc.log_message)
            await self.close(code=CLOSE_ENGINE)
            return
        # The stream also ends when the lab ends, the instance is removed or could not
        # start, possibly before the channel layer's notice arrives: ask the database.
        why = await self._gone()
        if why == "pending":  # attached early to a container that then failed to start
            await self._wait_again()
        elif why == "exited":
            code = self.terminal.exit_code
            await self.send(text_data=json.dumps({"type": "exit", "code": code}))
            await self.close(code=CLOSE_EXITED)

    async def _gone(self) -> str:
        """Why the instance has no shell to show; told to the client (and the socket closed)
        if the lab ended, or the instance was removed or failed."""
        why, detail = await database_sync_to_async(selectors.instance_why_gone)(
            instance_id=self.instance_id
        )
        if why == "ended":
            await self.lab_ended({"reason": detail})
        elif why == "removed":
            await self.instance_removed({})
        elif why == "failed":
            await self._tell_failed(detail)
        return why

    async def _wait_again(self) -> None:
        if self.terminal is not None:
            with contextlib.suppress(Exception):
                await self.terminal.close()
        self.terminal, self.ready_container = None, None
        self.waiter = asyncio.ensure_future(self._wait_until_ready())

    async def _heartbeat(self) -> None:
        """Presence (who is attached) in Redis, refreshed while attached."""
        join = sync_to_async(live.state().presence_join, thread_sensitive=False)
        while True:
            with contextlib.suppress(Exception):
                await join(self.instance_id, self.channel_name)
            await asyncio.sleep(HEARTBEAT)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.instance_id:
            return
        if bytes_data is not None:
            if self.terminal is None:
                return  # nothing to type into yet
            if len(bytes_data) > MAX_INPUT:
                await self.close(code=CLOSE_TOO_BIG)
                return
            await self._take_size()
            await self.terminal.write(bytes_data)
            return
        if text_data is None or len(text_data) > MAX_CONTROL:
            return
        control = parse_control(text_data)
        if control is None:
            return
        kind, first, second = control
        if kind == "resize":
            self.size = (first, second)
            await self._take_size()
        else:
            self.unacked = max(0, self.unacked - first)
            if self.unacked < WINDOW:
                self.window.set()

    async def _take_size(self) -> None:
        """This client is the active one: the PTY takes its size, if it has another."""
        if self.size is None or self.terminal is None:
            return
        if _applied_sizes.get(self.instance_id) != self.size:
            _applied_sizes[self.instance_id] = self.size
            await self.terminal.resize(*self.size)

    async def lab_ended(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "ended", "reason": event.get("reason")}))
        await self.close(code=CLOSE_ENDED)

    async def instance_removed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "removed"}))
        await self.close(code=CLOSE_REMOVED)

    async def instance_ready(self, event: dict[str, Any]) -> None:
        container_id = event.get("container_id")
        if self.terminal is None and isinstance(container_id, str) and container_id:
            self.ready_container = container_id
            self.wakeup.set()

    async def instance_failed(self, event: dict[str, Any]) -> None:
        if self.terminal is None:  # else its stream ends, and the pump asks why
            await self._tell_failed(str(event.get("message") or ""))

    async def _tell_failed(self, message: str) -> None:
        message = message or "This instance could not be started."
        await self._send_json({"type": "failed", "message": message})
        await self.close(code=CLOSE_FAILED)

    async def instance_pull(self, event: dict[str, Any]) -> None:
        progress = event.get("progress")
        if self.terminal is None and isinstance(progress, dict):
            await self._send_json({"type": "pull", **progress})

    async def disconnect(self, code: int) -> None:
        for task in (self.pump, self.heartbeat, self.waiter, self.expected):
            if task is not None:
                task.cancel()
        for group in self.groups_joined:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
        if self.terminal is not None:
            with contextlib.suppress(Exception):
                await self.terminal.close()
        if self.instance_id:
            leave = sync_to_async(live.state().presence_leave, thread_sensitive=False)
            with contextlib.suppress(Exception):
                await leave(self.instance_id, self.channel_name)
