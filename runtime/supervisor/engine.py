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
from runtime.container import idmap
from runtime.container import rootfs as overlay
from runtime.container.bundle import BindMount, build_config, write_bundle
from runtime.container.filesystems import mount_filesystems
from runtime.container.idmap import IdRange
from runtime.container.model import ContainerRecord, RunOptions, Status
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
from runtime.supervisor.session import Session
from runtime.volumes import VolumeStore, parse_volume_spec

logger = logging.getLogger(__name__)


EXEC_LINGER = 300.0  # seconds an exited exec's session is kept
PREPARE_DELAY = 0.2  # seconds from a create to making what the next one will need


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
        self.namespaces = idmap.NamespacePool(profile.userns_size)
        self.spares = (
            overlay.WritablePool(
                config.tmp_dir,
                os.path.join(config.root, "templates"),
                profile.rootfs_size,
                profile.rootfs_inodes,
            )
            if profile.rootfs_size
            else None
        )
        self._background: set[asyncio.Task[Any]] = set()

    # -- start-up ---------------------------------------------------------------------------

    async def open(self) -> None:
        for path in (self.config.containers_dir, self.config.tmp_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        if self.spares is not None:
            self.spares.discard_leftovers()
        await asyncio.to_thread(ensure_keeper, self.config.root)
        self.keeper.connect()
        await self.reconcile()
        self._prepare_ahead()

    def close(self) -> None:
        """On shutdown: with no live container left, remove this root's cgroup parent."""
        self.namespaces.close()
        if self.spares is not None:
            self.spares.close()
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
        if self.profile.userns:
            used = (r.userns_base for r in self.containers.all())
            record.userns_base = idmap.allocate(
                used, self.profile.userns_size, prefer=self.namespaces.ready()
            )
        self.containers.save(record)
        try:
            await self._prepare(
                record, image.config.get("config") or {}, self.images.layer_paths(image)
            )
            await self._spawn(record)
        except BaseException:
            await self._discard(record)
            raise
        self.emit("created", record.id)
        self._prepare_ahead()
        return record

    def _prepare_ahead(self) -> None:
        """Meanwhile, make what the next container will need: its writable layer and the
        user namespace of the range it will get."""
        jobs: list[Callable[[], None]] = []
        if self.spares is not None:
            jobs.append(self.spares.prepare)
        if self.profile.userns:
            used = (r.userns_base for r in self.containers.all())
            with contextlib.suppress(ContainerRuntimeError):
                base = idmap.allocate(used, self.profile.userns_size)
                jobs.append(lambda: self.namespaces.prepare(base))
        for job in jobs:
            task = asyncio.get_running_loop().create_task(self._later(job))
            self._background.add(task)
            task.add_done_callback(self._background_done)

    @staticmethod
    async def _later(job: Callable[[], None]) -> None:
        """After a pause: a create is usually followed at once by a start, and on a small
        host the two would compete for the CPU."""
        await asyncio.sleep(PREPARE_DELAY)
        await asyncio.to_thread(job)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("preparing for the next container: %s", task.exception())

    async def _prepare(
        self, record: ContainerRecord, image_config: dict[str, Any], layers: list[str]
    ) -> None:
        container_dir = self.containers.path(record.id)
        profile = self.profile
        binds = self._binds(record)
        ids = IdRange(record.userns_base, profile.userns_size) if record.userns_base else None
        rootfs, mounted = await asyncio.to_thread(
            mount_filesystems,
            container_dir,
            layers,
            binds,
            profile,
            ids,
            self.namespaces,
            self.spares,
        )
        etc = self._etc_files(record, overlay.writable_dir(container_dir), ids)
        config = build_config(
            container_id=record.id,
            options=record.options,
            image_config=image_config,
            rootfs=rootfs,
            binds=mounted,
            profile=self.profile,
            etc_files=etc,
            ids=ids,
        )
        config["linux"]["cgroupsPath"] = self._cgroup_path(record.id)
        write_bundle(container_dir, config)
        record.args = list(config["process"]["args"])
        record.mounts = [vars(b) for b in binds]  # saved with the pid by _spawn

    def _binds(self, record: ContainerRecord) -> list[BindMount]:
        binds = []
        for text in record.options.volumes:
            spec = parse_volume_spec(text)
            if spec.kind == "bind":
                if not os.path.exists(spec.source):
                    os.makedirs(spec.source, mode=0o755)
                source = spec.source
            else:
                name = spec.source if spec.kind == "named" else None
                try:
                    volume = self.volumes.get(name) if name else self._new_volume(None)
                except ContainerRuntimeError:
                    volume = self._new_volume(name)
                source = self.volumes.mountpoint(volume.name)
            binds.append(BindMount(source, spec.destination, spec.read_only))
        return binds

    def _new_volume(self, name: str | None) -> Any:
        return self.volumes.create(name, size=self.profile.volume_size)

    def _etc_files(
        self, record: ContainerRecord, container_dir: str, ids: IdRange | None
    ) -> dict[str, str]:
        hostname = record.options.hostname or record.id[:12]
        files = {
            "/etc/hostname": f"{hostname}\n",
            "/etc/hosts": (
                f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n"
            ),
            "/etc/resolv.conf": "",
        }
        out = {}
        for dest, text in files.items():
            path = os.path.join(container_dir, os.path.basename(dest))
            with open(path, "w") as f:
                f.write(text)
            if ids is not None:
                os.chown(path, ids.base, ids.base)  # the container's root may edit them
            out[dest] = path
        return out

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


def inspect_record(record: ContainerRecord) -> dict[str, Any]:
    options = record.options
    return {
        "Id": record.id,
        "Name": f"/{record.name}",
        "Created": record.created,
        "Path": record.args[0] if record.args else "",
        "Args": record.args[1:],
        "Image": record.image_id,
        "State": {
            "Status": record.status.value,
            "Running": record.status is Status.RUNNING,
            "Pid": record.pid,
            "ExitCode": record.exit_code or 0,
            "OOMKilled": record.oom_killed,
            "StartedAt": record.started_at,
            "FinishedAt": record.finished_at,
        },
        "Config": {
            "Image": options.image,
            "Cmd": list(options.cmd) if options.cmd is not None else None,
            "Entrypoint": list(options.entrypoint) if options.entrypoint is not None else None,
            "Env": list(options.env),
            "WorkingDir": options.workdir or "",
            "Hostname": options.hostname or record.id[:12],
            "User": options.user or "",
            "Tty": options.tty,
            "OpenStdin": options.stdin,
            "Labels": dict(options.labels),
        },
        "HostConfig": {
            "Memory": options.memory or 0,
            "NanoCpus": int((options.cpus or 0) * 1e9),
            "PidsLimit": options.pids_limit,
            "ReadonlyRootfs": options.read_only,
            "NetworkMode": options.network,
            "AutoRemove": options.auto_remove,
            "Binds": list(options.volumes),
        },
        "Mounts": record.mounts,
    }
