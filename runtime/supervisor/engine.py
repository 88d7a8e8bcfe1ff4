"""The engine's container lifecycle, as the daemon runs it: create, start, exec, attach,
kill, stop, remove, wait, inspect, stats and events. Processes and terminals are owned by
the keeper; this class keeps records, sessions (logs, scrollback, attachers) and events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import secrets
import signal as signals
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.config import EngineConfig
from runtime.container import rootfs as overlay
from runtime.container.model import ContainerRecord, RunOptions, Status, inspect_record
from runtime.container.store import ContainerStore
from runtime.errors import (
    ContainerRuntimeError,
    InvalidArgument,
    InvalidTransition,
)
from runtime.image.store import ImageStore
from runtime.oci import cgroups
from runtime.oci.spec import parse_signal
from runtime.profile import DEFAULT_PROFILE, Profile
from runtime.supervisor.keeper_client import KeeperClient, ensure_keeper
from runtime.supervisor.preparer import Preparer
from runtime.supervisor.session import Session
from runtime.volumes import VolumeStore

logger = logging.getLogger(__name__)


EXEC_LINGER = 300.0  # seconds an exited exec's session is kept


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def cgroup_parent(root: str) -> str:
    """Each engine root has its own cgroup parent, so two roots never touch each other's."""
    return "/playground-" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:12]


@dataclass
class ExecRecord:
    id: str
    container_id: str
    tty: bool
    exit_code: int | None = None


class Engine:
    def __init__(self, config: EngineConfig, profile: Profile = DEFAULT_PROFILE) -> None:
        self.config = config
        self.profile = profile
        self.containers = ContainerStore(config.containers_dir)
        self.images = ImageStore(config.images_dir)
        self.volumes = VolumeStore(config.volumes_dir)
        self.keeper = KeeperClient(config.root, self._keeper_event)
        self.sessions: dict[str, Session] = {}
        self.execs: dict[str, ExecRecord] = {}
        self.exits: dict[str, asyncio.Event] = {}
        self.subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self.cgroup_parent = cgroup_parent(config.root)
        self.preparer = Preparer(config, profile, self.volumes)

    # -- start-up ---------------------------------------------------------------------------

    async def open(self) -> None:
        for path in (self.config.containers_dir, self.config.tmp_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        self.preparer.open()
        await asyncio.to_thread(ensure_keeper, self.config.root)
        self.keeper.connect()
        await self.reconcile()
        self.preparer.prepare_ahead(self._ranges())

    def close(self) -> None:
        """On shutdown: with no live container left, remove this root's cgroup parent."""
        self.preparer.close()
        live = (Status.RUNNING, Status.CREATED)
        if any(r.status in live for r in self.containers.all()):
            return
        for directory in cgroups.open_cgroup(self.cgroup_parent).dirs():
            with contextlib.suppress(OSError):
                os.rmdir(directory.path)

    async def reconcile(self) -> None:
        """After a (re)start: re-attach to every live container through the keeper."""
        for record in self.containers.all():
            if record.status not in (Status.RUNNING, Status.CREATED):
                continue
            reply, fds = await self.keeper.call("fds", key=record.id)
            if fds and reply.get("exit_code") is None:
                self._open_session(record, fds)
                continue
            for fd in fds:
                os.close(fd)
            code = reply.get("exit_code")
            if code is None:
                code = self._exit_file(record.id)
            await self._exited(record, 255 if code is None else int(code))

    def _exit_file(self, container_id: str) -> int | None:
        try:
            with open(self.containers.path(container_id, "exit.json")) as f:
                return int(json.load(f)["exit_code"])
        except (OSError, ValueError, KeyError):
            return None

    # -- events -----------------------------------------------------------------------------

    def emit(self, kind: str, container_id: str, **extra: Any) -> None:
        event = {"type": kind, "id": container_id, "time": time.time(), **extra}
        for queue in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    def _keeper_event(self, message: dict[str, Any]) -> None:
        """An exit reported by the keeper. Handled on the next loop turn: the reply to the
        request that started the process may sit in the same read, and whoever awaits it must
        first register the process (a fast ``exec`` exits before that otherwise)."""
        key = str(message.get("key"))
        code = int(message.get("exit_code", 255))
        asyncio.get_running_loop().call_soon(self._process_exited, key, code)

    def _process_exited(self, key: str, code: int) -> None:
        if "/exec/" in key:
            exec_id = key.rsplit("/", 1)[1]
            record = self.execs.get(exec_id)
            if record is not None:
                record.exit_code = code
            session = self.sessions.get(key)
            if session is not None:
                session.finish(code)
            self._set_exit(key)
            asyncio.get_running_loop().call_later(EXEC_LINGER, self._forget_exec, key, exec_id)
            return
        with contextlib.suppress(ContainerRuntimeError):
            container = self.containers.load(key)
            asyncio.get_running_loop().create_task(self._exited(container, code))

    def _forget_exec(self, key: str, exec_id: str) -> None:
        """An exec's output and exit code stay readable for a while, then go."""
        session = self.sessions.pop(key, None)
        if session is not None:
            session.close()
        self.execs.pop(exec_id, None)
        self.exits.pop(key, None)
        asyncio.get_running_loop().create_task(self._release(key))

    async def _release(self, key: str) -> None:
        with contextlib.suppress(ContainerRuntimeError):
            await self.keeper.call("release", key=key)

    def _set_exit(self, key: str) -> None:
        self.exits.setdefault(key, asyncio.Event()).set()

    async def _exited(self, record: ContainerRecord, code: int) -> None:
        cgroup = cgroups.open_cgroup(self._cgroup_path(record.id))
        with contextlib.suppress(ContainerRuntimeError, OSError):
            if cgroup.oom_killed() > 0:
                record.oom_killed = True
                self.emit("oom", record.id)
        record.status = Status.EXITED
        record.exit_code = code
        record.finished_at = now()
        record.pid = 0
        self.containers.save(record)
        session = self.sessions.get(record.id)
        if session is not None:
            session.finish(code)
        self._set_exit(record.id)
        self.emit("exited", record.id, exit_code=code, oom_killed=record.oom_killed)
        if record.options.auto_remove:
            await asyncio.sleep(0)
            with contextlib.suppress(ContainerRuntimeError):
                await self.remove(record.id, force=True)

    # -- create and start -------------------------------------------------------------------

    def _cgroup_path(self, container_id: str) -> str:
        return f"{self.cgroup_parent}/{container_id}"

    async def create(self, options: RunOptions) -> ContainerRecord:
        image = self.images.resolve(options.image)
        name = self.containers.check_name(options.name)
        record = ContainerRecord(
            id=self.containers.new_id(),
            name=name,
            options=options,
            image_id=image.id,
            created=now(),
        )
        record.userns_base = self.preparer.allocate_range(self._ranges())
        self.containers.save(record)
        try:
            await self.preparer.prepare(
                record,
                self.containers.path(record.id),
                image.config.get("config") or {},
                self.images.layer_paths(image),
                self._cgroup_path(record.id),
            )  # the record is saved with the pid by _spawn
            await self._spawn(record)
        except BaseException:
            await self._discard(record)
            raise
        self.emit("created", record.id)
        self.preparer.prepare_ahead(self._ranges())
        return record

    def _ranges(self) -> list[int]:
        return [r.userns_base for r in self.containers.all()]

    async def _spawn(self, record: ContainerRecord) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.containers.path(record.id, "exit.json"))
        reply, fds = await self.keeper.call(
            "create",
            id=record.id,
            bundle=self.containers.path(record.id),
            tty=record.options.tty,
            exit_file=self.containers.path(record.id, "exit.json"),
        )
        record.pid = int(reply["pid"])
        record.status = Status.CREATED
        record.exit_code = None
        self.containers.save(record)
        self.exits.pop(record.id, None)
        self._open_session(record, fds)

    def _open_session(self, record: ContainerRecord, fds: list[int]) -> None:
        old = self.sessions.pop(record.id, None)
        if old is not None:
            old.close()
        session = Session(
            record.id,
            fds,
            tty=record.options.tty,
            log_path=self.containers.path(record.id, "container.log"),
            on_close_stdin=self._keeper_closer(record.id),
        )
        session.start()
        self.sessions[record.id] = session

    def _keeper_closer(self, key: str) -> Callable[[], None]:
        """The keeper holds a copy of the stdin pipe too: closing stdin closes both."""

        def close() -> None:
            task = asyncio.get_running_loop().create_task(self.keeper.call("close_stdin", key=key))
            task.add_done_callback(lambda t: t.exception())

        return close

    async def start(self, ref: str) -> ContainerRecord:
        record = self.containers.resolve(ref)
        if record.status is Status.RUNNING:
            return record
        if not record.status.can_start():
            raise InvalidTransition(record.id, record.status.value, "start")
        if record.status is Status.EXITED:
            await self.keeper.call("delete", id=record.id)
            await self._spawn(record)
        await self.keeper.call("start", id=record.id)
        record.status = Status.RUNNING
        record.started_at = now()
        self.containers.save(record)
        self.emit("started", record.id)
        return record

    # -- signals, stop, remove --------------------------------------------------------------

    async def kill(self, ref: str, signal: str | int = "KILL") -> None:
        record = self.containers.resolve(ref)
        if not record.status.can_kill():
            raise InvalidTransition(record.id, record.status.value, "kill")
        signum = signal if isinstance(signal, int) else parse_signal(signal)
        await self.keeper.call("kill", id=record.id, signal=signum)

    async def stop(self, ref: str, timeout: float = 10.0) -> None:
        record = self.containers.resolve(ref)
        if record.status is not Status.RUNNING:
            return
        with contextlib.suppress(ContainerRuntimeError):
            await self.keeper.call("kill", id=record.id, signal=int(signals.SIGTERM))
        if not await self._wait_for(record.id, timeout):
            with contextlib.suppress(ContainerRuntimeError):
                await self.keeper.call("kill", id=record.id, signal=int(signals.SIGKILL))
            await self._wait_for(record.id, 10.0)

    async def _wait_for(self, key: str, timeout: float | None) -> bool:
        event = self.exits.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def wait(self, ref: str) -> int:
        record = self.containers.resolve(ref)
        if record.status in (Status.RUNNING, Status.CREATED):
            await self._wait_for(record.id, None)
            record = self.containers.load(record.id)
        return record.exit_code if record.exit_code is not None else 0

    async def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        record = self.containers.resolve(ref)
        if record.status is Status.RUNNING and not force:
            raise InvalidArgument(
                "rm",
                f"cannot remove container {record.id[:12]}: container is running: "
                "stop the container before removing or force remove",
            )
        await self._discard(record)
        self.emit("removed", record.id)
        return record.id

    async def _discard(self, record: ContainerRecord) -> None:
        with contextlib.suppress(ContainerRuntimeError):
            await self.keeper.call("delete", id=record.id)
        for key in [k for k in self.sessions if k == record.id or k.startswith(f"{record.id}/")]:
            self.sessions.pop(key).close()
        with contextlib.suppress(ContainerRuntimeError, OSError):
            cgroups.open_cgroup(self._cgroup_path(record.id)).destroy()
        await asyncio.to_thread(overlay.unmount_overlay, self.containers.path(record.id))
        self.containers.remove(record.id)
        self._set_exit(record.id)

    # -- exec -------------------------------------------------------------------------------

    async def exec(
        self,
        ref: str,
        cmd: list[str],
        *,
        tty: bool = False,
        env: list[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
    ) -> ExecRecord:
        record = self.containers.resolve(ref)
        if not record.status.can_exec():
            raise InvalidTransition(record.id, record.status.value, "exec in")
        if not cmd:
            raise InvalidArgument("exec", "no command specified")
        with open(self.containers.path(record.id, "config.json")) as f:
            process = dict(json.load(f)["process"])
        process["args"] = list(cmd)
        process["terminal"] = tty
        process.pop("consoleSize", None)
        if env:
            process["env"] = list(process.get("env") or []) + list(env)
        if workdir:
            process["cwd"] = workdir
        if user:
            from runtime.container.bundle import resolve_user

            process["user"] = resolve_user(self.containers.path(record.id, "rootfs"), user)
        exec_id = secrets.token_hex(16)
        key = f"{record.id}/exec/{exec_id}"
        _, fds = await self.keeper.call("exec", id=record.id, exec_id=exec_id, process=process)
        exec_record = ExecRecord(exec_id, record.id, tty)
        self.execs[exec_id] = exec_record
        session = Session(key, fds, tty=tty, log_path=None, on_close_stdin=self._keeper_closer(key))
        session.start()
        self.sessions[key] = session
        return exec_record

    def exec_session(self, exec_id: str) -> tuple[ExecRecord, Session]:
        record = self.execs.get(exec_id)
        if record is None:
            raise InvalidArgument("exec", f"no such exec instance: {exec_id}")
        return record, self.sessions[f"{record.container_id}/exec/{exec_id}"]

    async def exec_wait(self, exec_id: str) -> int:
        record, _ = self.exec_session(exec_id)
        await self._wait_for(f"{record.container_id}/exec/{exec_id}", None)
        return record.exit_code if record.exit_code is not None else 0

    # -- queries ----------------------------------------------------------------------------

    def session(self, ref: str) -> tuple[ContainerRecord, Session]:
        record = self.containers.resolve(ref)
        session = self.sessions.get(record.id)
        if session is None:
            raise InvalidTransition(record.id, record.status.value, "attach to")
        return record, session

    def stats(self, ref: str) -> dict[str, Any]:
        record = self.containers.resolve(ref)
        if record.status is not Status.RUNNING:
            raise InvalidTransition(record.id, record.status.value, "read stats of")
        st = cgroups.open_cgroup(self._cgroup_path(record.id)).stats()
        return {"id": record.id, "name": record.name, **dataclasses.asdict(st)}

    def inspect(self, ref: str) -> dict[str, Any]:
        record = self.containers.resolve(ref)
        return inspect_record(record)
