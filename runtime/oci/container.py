"""The container lifecycle of the OCI runtime: create, start, run, exec, kill, delete, state
and list. This is the in-process API that the CLI and the engine call.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from runtime import linux
from runtime.errors import (
    ContainerNotFound,
    ContainerRuntimeError,
    ContainerSetupError,
    HookError,
    InvalidSpec,
    InvalidTransition,
)
from runtime.oci import cgroups, hooks, init, seccomp, selfexe, spec, terminal
from runtime.oci.rootfs import read_cgroup_mounts
from runtime.oci.state import (
    DEFAULT_ROOT,
    EXEC_FIFO,
    OCI_VERSION,
    ContainerState,
    StateStore,
    Status,
    process_start_time,
)
from runtime.oci.sync import SyncChannel

logger = logging.getLogger(__name__)

CGROUP_PARENT = "/playground"

# Appended to every devices allowlist, as runc does: creating nodes (the init makes /dev's
# standard devices), the standard devices themselves, and PTYs.
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
        for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))
    ),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
)


@dataclass(frozen=True)
class Stdio:
    """Terminal wiring for create/exec: a console socket path, or (for foreground use) a
    socket the caller reads the PTY master from."""

    console_socket: str | None = None
    console: socket.socket | None = None
    # Descriptors that become the process's stdin, stdout and stderr (default: ours).
    fds: tuple[int, int, int] | None = None


def exit_status(wait_status: int) -> int:
    """A wait status as a shell exit code: the code, or 128 + the signal."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


class Runtime:
    """One state root (``--root``); every method names the container by id."""

    def __init__(self, root: str = DEFAULT_ROOT, *, require_sealed: bool = True) -> None:
        self.store = StateStore(root)
        self.require_sealed = require_sealed

    # -- queries ---------------------------------------------------------------------------

    def status(self, container_id: str) -> Status:
        return self.store.status(self.store.load(container_id))

    def state(self, container_id: str) -> dict[str, Any]:
        st = self.store.load(container_id)
        return self._state_dict(st, self.store.status(st))

    def _state_dict(self, st: ContainerState, status: Status) -> dict[str, Any]:
        return {
            "ociVersion": OCI_VERSION,
            "id": st.id,
            "pid": st.pid if status is not Status.STOPPED else 0,
            "status": status.value,
            "bundle": st.bundle,
            "rootfs": st.rootfs,
            "created": st.created,
            "owner": st.owner,
            "annotations": st.annotations,
        }

    def list(self) -> list[dict[str, Any]]:
        out = []
        for cid in self.store.ids():
            with contextlib.suppress(ContainerNotFound, ValueError):
                out.append(self.state(cid))
        return out

    # -- create ----------------------------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        stdio: Stdio | None = None,
        pid_file: str | None = None,
    ) -> ContainerState:
        """Set the container up and leave its init waiting for ``start``."""
        self._check_sealed()
        bundle = os.path.abspath(bundle)
        config = spec.read(bundle)
        for warning in spec.validate(config):
            logger.warning("container %s: %s", container_id, warning)
        if "process" not in config:
            raise InvalidSpec("process", "is required to create a container")
        self.store.reserve(container_id)
        try:
            return self._create(container_id, bundle, config, stdio or Stdio(), pid_file)
        except BaseException:
            self.store.remove(container_id)
            raise

    def _check_sealed(self) -> None:
        if self.require_sealed and not selfexe.is_sealed():
            raise ContainerRuntimeError(
                "the runtime must run from a sealed copy of its interpreter "
                "(call runtime.oci.selfexe.reexec_sealed() first)"
            )

    def _create(
        self,
        container_id: str,
        bundle: str,
        config: dict[str, Any],
        stdio: Stdio,
        pid_file: str | None,
    ) -> ContainerState:
        lnx = config.get("linux") or {}
        rootfs = os.path.join(bundle, config["root"]["path"])
        st = ContainerState(
            id=container_id,
            bundle=bundle,
            rootfs=os.path.realpath(rootfs),
            cgroups_path=_cgroups_path(lnx, container_id),
            annotations=dict(config.get("annotations") or {}),
            config=config,
        )
        new_ns, join_ns = _namespaces(lnx)
        if "mount" not in new_ns and "mount" not in dict(join_ns):
            raise InvalidSpec("linux.namespaces", "a mount namespace is required")
        cgroup = cgroups.open_cgroup(st.cgroups_path)
        cgroup.create()
        fifo_path = os.path.join(self.store.dir(container_id), EXEC_FIFO)
        try:
            cgroup.apply(_resources(lnx))
            os.mkfifo(fifo_path, 0o600)
            fifo_fd = os.open(fifo_path, os.O_RDWR | os.O_CLOEXEC)
            req = init.InitRequest(
                container_id=container_id,
                config=config,
                rootfs=st.rootfs,
                sync=SyncChannel.pair()[0],
                process=config["process"],
                new_namespaces=new_ns,
                join_namespaces=join_ns,
                fifo_fd=fifo_fd,
                seccomp_program=_seccomp_program(lnx),
                cgroup_mounts=_cgroup_mounts(config),
                has_hooks=_has_hooks(config),
            )
            try:
                self._spawn(req, st, cgroup, stdio)
            finally:
                os.close(fifo_fd)
        except BaseException:
            if st.pid:
                with contextlib.suppress(OSError):
                    os.kill(st.pid, signal.SIGKILL)
            cgroup.destroy()
            raise
        st.created = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        self.store.save(st)
        if pid_file:
            _write_pid_file(pid_file, st.pid)
        return st

    def _spawn(
        self, req: init.InitRequest, st: ContainerState, cgroup: cgroups.CgroupManager, stdio: Stdio
    ) -> None:
        parent, child = SyncChannel.pair()
        req.sync = child
        req.console = _console(stdio, req.process)
        req.stdio_fds = stdio.fds
        req.direct = init.can_fork_directly(req)
        try:
            pid = _fork_into(req)
            if pid == 0:
                parent.close()
                if req.direct:
                    init.direct_main(req)
                init.child_main(req)
        finally:
            child.close()
            if req.console is not None:
                req.console.close()
        try:
            st.pid = self._handshake(parent, pid, req, st, cgroup)
        except BaseException:
            if req.direct:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise
        finally:
            parent.close()
            if not req.direct:
                _reap(pid)

    def _handshake(
        self,
        sync: SyncChannel,
        child: int,
        req: init.InitRequest,
        st: ContainerState,
        cgroup: cgroups.CgroupManager,
    ) -> int:
        cid = st.id
        try:
            if req.direct:
                cgroup.add_pid(child)
                sync.send("go")
                init_pid = child
            elif init.maps_first(req):
                self._map_ids(sync, child, req, cid)
                init_pid = int(sync.expect("pid", cid)["pid"])
                cgroup.add_pid(init_pid)
                sync.send("go")
            else:
                cgroup.add_pid(child)
                sync.send("go")
                if "user" in req.new_namespaces:
                    self._map_ids(sync, child, req, cid)
                init_pid = int(sync.expect("pid", cid)["pid"])
            st.pid = init_pid
            st.pid_start_time = process_start_time(init_pid)
            if req.has_hooks and not req.exec_mode:
                self._create_hooks(sync, req, st)
            sync.expect("created", cid)
            return init_pid
        except HookError:
            raise
        except ContainerRuntimeError as exc:
            raise ContainerSetupError(cid, str(exc).split(": ", 1)[-1]) from exc
        except OSError as exc:  # the init died: its own report, if any, is the better message
            raise ContainerSetupError(cid, _last_words(sync) or f"init exited ({exc})") from exc

    def _map_ids(self, sync: SyncChannel, child: int, req: init.InitRequest, cid: str) -> None:
        sync.expect("userns", cid)
        _write_id_maps(child, req.config.get("linux") or {})
        sync.send("mapped")

    def _create_hooks(self, sync: SyncChannel, req: init.InitRequest, st: ContainerState) -> None:
        sync.expect("hooks", st.id)
        state_json = _json(self._state_dict(st, Status.CREATING))
        hooks.run_hooks(req.config, "prestart", state_json)
        hooks.run_hooks(req.config, "createRuntime", state_json)
        sync.send("hooks-done", state=_json(self._state_dict(st, Status.CREATED)))

    # -- start, kill, delete ---------------------------------------------------------------

    def start(self, container_id: str) -> None:
        st = self.store.load(container_id)
        status = self.store.status(st)
        if not status.can_start():
            raise InvalidTransition(container_id, status.value, "start")
        fifo = os.path.join(self.store.dir(container_id), EXEC_FIFO)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ContainerSetupError(container_id, "init is not waiting for start") from exc
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(fifo)
        if (st.config.get("hooks") or {}).get("poststart"):
            state_json = _json(self._state_dict(st, Status.RUNNING))
            hooks.run_hooks(st.config, "poststart", state_json, strict=False)

    def kill(self, container_id: str, signum: int) -> None:
        st = self.store.load(container_id)
        status = self.store.status(st)
        if not status.can_kill():
            raise InvalidTransition(container_id, status.value, "kill")
        _signal(st, signum)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        st = self.store.load(container_id)
        status = self.store.status(st)
        if not force and not status.can_delete():
            raise InvalidTransition(container_id, status.value, "delete")
        if status in (Status.CREATED, Status.RUNNING):
            with contextlib.suppress(OSError):
                _signal(st, signal.SIGKILL)
            _wait_gone(st.pid, st.pid_start_time, timeout=10.0)
        if st.cgroups_path:
            cgroups.open_cgroup(st.cgroups_path).destroy()
        state_json = _json(self._state_dict(st, Status.STOPPED))
        self.store.remove(container_id)
        hooks.run_hooks(st.config, "poststop", state_json, strict=False)

    # -- run and exec ----------------------------------------------------------------------

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        stdio: Stdio | None = None,
        pid_file: str | None = None,
        detach: bool = False,
    ) -> int:
        """create + start; in the foreground also wait and delete. Returns the exit status."""
        linux.set_child_subreaper()
        _reap_children_ourselves()
        stdio = stdio or Stdio()
        proxy = _proxy_pair(stdio, bundle, detach)
        st = self.create(
            container_id, bundle, stdio=proxy[0] if proxy else stdio, pid_file=pid_file
        )
        try:
            master = terminal.recv_master(proxy[1]) if proxy else -1
            self.start(container_id)
            if detach:
                return 0
            return _wait_child(st.pid, master)
        finally:
            if proxy:
                proxy[1].close()
            if not detach:
                self.delete(container_id, force=True)

    def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        *,
        stdio: Stdio | None = None,
        pid_file: str | None = None,
        detach: bool = False,
    ) -> int:
        """Run ``process`` in the container's namespaces and cgroup; returns its exit status
        (0 at once with ``detach``)."""
        self._check_sealed()
        st = self.store.load(container_id)
        status = self.store.status(st)
        if not status.can_exec():
            raise InvalidTransition(container_id, status.value, "exec in")
        linux.set_child_subreaper()
        _reap_children_ourselves()
        stdio = stdio or Stdio()
        proxy = _proxy_pair(stdio, None, detach, process=process)
        req = init.InitRequest(
            container_id=container_id,
            config=st.config,
            rootfs=st.rootfs,
            sync=SyncChannel.pair()[0],
            process=process,
            join_namespaces=_container_namespaces(st),
            seccomp_program=_seccomp_program(st.config.get("linux") or {}),
            exec_mode=True,
        )
        probe = ContainerState(id=container_id, bundle=st.bundle, rootfs=st.rootfs)
        cgroup = cgroups.open_cgroup(st.cgroups_path)
        self._spawn(req, probe, cgroup, proxy[0] if proxy else stdio)
        if pid_file:
            _write_pid_file(pid_file, probe.pid)
        if detach:
            return 0
        master = terminal.recv_master(proxy[1]) if proxy else -1
        return _wait_child(probe.pid, master)


def _reap_children_ourselves() -> None:
    """With SIGCHLD ignored (inherited from a careless parent) the kernel reaps our children
    and their exit status is lost: take the default back (main thread only)."""
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data)


def _resources(lnx: dict[str, Any]) -> dict[str, Any]:
    resources = dict(lnx.get("resources") or {})
    rules = list(resources.get("devices") or [{"allow": False, "access": "rwm"}])
    resources["devices"] = rules + list(DEFAULT_DEVICE_RULES)
    return resources


def _cgroups_path(lnx: dict[str, Any], container_id: str) -> str:
    path = lnx.get("cgroupsPath")
    if not path:
        return f"{CGROUP_PARENT}/{container_id}"
    return str(path)


def _namespaces(lnx: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    new: list[str] = []
    join: list[tuple[str, str]] = []
    for ns in lnx.get("namespaces") or []:
        if ns.get("path"):
            join.append((ns["type"], ns["path"]))
        else:
            new.append(ns["type"])
    return new, join


def _container_namespaces(st: ContainerState) -> list[tuple[str, str]]:
    """Every namespace of the container's init that differs from ours."""
    out = []
    for kind, name in init.NS_PROC_NAMES.items():
        theirs = f"/proc/{st.pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{name}").st_ino:
                out.append((kind, theirs))
        except FileNotFoundError:
            continue
    return out


def _seccomp_program(lnx: dict[str, Any]) -> bytes | None:
    if not lnx.get("seccomp"):
        return None
    return seccomp.compile_bpf(lnx["seccomp"])


def _cgroup_mounts(config: dict[str, Any]) -> Any:
    for entry in config.get("mounts") or []:
        if entry.get("type") in ("cgroup", "cgroup2"):
            return read_cgroup_mounts()
    return None


def _has_hooks(config: dict[str, Any]) -> bool:
    found = config.get("hooks") or {}
    return any(
        found.get(k) for k in ("prestart", "createRuntime", "createContainer", "startContainer")
    )


def _console(stdio: Stdio, process: dict[str, Any]) -> socket.socket | None:
    if not process.get("terminal"):
        return None
    if stdio.console is not None:
        return stdio.console
    if stdio.console_socket:
        try:
            return terminal.connect_console_socket(stdio.console_socket)
        except OSError as exc:
            raise ContainerRuntimeError(
                f"console socket {stdio.console_socket}: {exc.strerror}"
            ) from exc
    raise InvalidSpec("process.terminal", "a terminal needs --console-socket")


def _proxy_pair(
    stdio: Stdio, bundle: str | None, detach: bool, process: dict[str, Any] | None = None
) -> tuple[Stdio, socket.socket] | None:
    """A socket pair to receive the PTY master on, when we must proxy it ourselves."""
    if stdio.console_socket or stdio.console is not None:
        return None
    if process is None and bundle is not None:
        process = spec.load(os.path.abspath(bundle)).get("process") or {}
    if not (process or {}).get("terminal"):
        return None
    if detach:
        raise InvalidSpec(
            "process.terminal", "a detached container with a terminal needs --console-socket"
        )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Stdio(console=theirs), ours


def _write_id_maps(pid: int, lnx: dict[str, Any]) -> None:
    for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
        lines = "".join(
            f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in lnx.get(key) or []
        )
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(lines)


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _signal(st: ContainerState, signum: int) -> None:
    """Signal the init through a pidfd, after checking it is still the same process."""
    fd = linux.pidfd_open(st.pid)
    try:
        if process_start_time(st.pid) != st.pid_start_time:
            raise InvalidTransition(st.id, Status.STOPPED.value, "kill")
        linux.pidfd_send_signal(fd, signum)
    finally:
        os.close(fd)


_FORK_LOCK = threading.Lock()


def _last_words(sync: SyncChannel) -> str | None:
    """An error the init managed to send before the channel broke."""
    with contextlib.suppress(OSError, ValueError):
        sync.sock.setblocking(False)
        message = sync.recv()
        if message.get("type") == "error":
            return str(message.get("message"))
    return None


def _fork() -> int:
    """fork(2) with the garbage collector off in the child: a collection there would touch
    every object and copy most of the parent's heap page by page."""
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        gc.disable()
    else:
        gc.unfreeze()
    return pid


def _fork_into(req: init.InitRequest) -> int:
    """Fork the child. On the direct path the child is the container's init itself: we
    switch our PID namespace for children around the fork and switch it back, so one fork
    (the costly part of a Python runtime) is enough. The lock keeps our own threads from
    forking into the container's PID namespace meanwhile."""
    if not req.direct:
        return _fork()
    joined = dict(req.join_namespaces)
    pid = -1
    with _FORK_LOCK:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if "pid" in joined:
                try:
                    init.setns_path(joined["pid"], "pid")
                except init.InitError as exc:
                    raise InvalidSpec("linux.namespaces", str(exc)) from exc
            elif "pid" in req.new_namespaces:
                linux.unshare(linux.CLONE_NEWPID)
            pid = _fork()
            return pid
        finally:
            if pid != 0:
                linux.setns(own, linux.CLONE_NEWPID)
                os.close(own)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _wait_gone(pid: int, start_time: int, timeout: float) -> None:
    """Wait until a process (not necessarily our child) has exited."""
    try:
        fd = linux.pidfd_open(pid)
    except OSError:
        return
    try:
        deadline = time.monotonic() + timeout
        while process_start_time(pid) == start_time:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ContainerRuntimeError(f"process {pid} did not exit within {timeout} s")
            select.select([fd], [], [], min(left, 0.05))
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    finally:
        os.close(fd)


def _wait_child(pid: int, master: int) -> int:
    """Wait for our (reparented) child; proxy its terminal meanwhile when ``master`` >= 0."""
    if master >= 0:
        fd = linux.pidfd_open(pid)
        try:
            terminal.proxy(master, fd)
        finally:
            os.close(fd)
            os.close(master)
    while True:
        try:
            _, wait_status = os.waitpid(pid, 0)
            return exit_status(wait_status)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
