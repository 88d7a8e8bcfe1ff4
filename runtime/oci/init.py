"""The code that runs in the forked children while a container is set up.

The runtime (P) forks a first child (C1) that joins and creates namespaces, then forks the
container's init (C2, PID 1 of a new PID namespace). C2 builds the rootfs, pivots into it,
drops privileges and waits on the exec FIFO before it execs the user's process. ``exec``
uses the same two steps, joining the namespaces of a running container instead.

These functions never return: each child ends in ``execve`` or ``os._exit``. They run with
the dumpable flag cleared, so no process in the container can open ``/proc/<pid>/exe``,
``fd`` or ``cwd`` of a child that still holds host resources.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from runtime import linux
from runtime.oci import creds, seccomp, terminal, userns
from runtime.oci.hooks import run_hooks
from runtime.oci.rootfs import CgroupMountInfo, RootfsBuilder, read_own_cgroups
from runtime.oci.sync import SyncChannel

NAMESPACE_FLAGS: dict[str, int] = {
    "user": linux.CLONE_NEWUSER,
    "ipc": linux.CLONE_NEWIPC,
    "uts": linux.CLONE_NEWUTS,
    "network": linux.CLONE_NEWNET,
    "pid": linux.CLONE_NEWPID,
    "cgroup": linux.CLONE_NEWCGROUP,
    "mount": linux.CLONE_NEWNS,
}
# /proc/<pid>/ns names, in the order namespaces are joined: user first, mount last.
NS_PROC_NAMES: dict[str, str] = {
    "user": "user",
    "ipc": "ipc",
    "uts": "uts",
    "network": "net",
    "pid": "pid",
    "cgroup": "cgroup",
    "mount": "mnt",
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class InitRequest:
    """Everything the children need, prepared by the runtime before it forks."""

    container_id: str
    config: dict[str, Any]
    rootfs: str
    sync: SyncChannel
    process: dict[str, Any]
    new_namespaces: list[str] = field(default_factory=list)
    join_namespaces: list[tuple[str, str]] = field(default_factory=list)
    fifo_fd: int = -1
    console: socket.socket | None = None
    seccomp_program: bytes | None = None
    cgroup_mounts: CgroupMountInfo | None = None
    exec_mode: bool = False
    has_hooks: bool = False
    direct: bool = False
    stdio_fds: tuple[int, int, int] | None = None
    in_cgroup: bool = False
    ns_fds: list[tuple[str, int]] = field(default_factory=list)
    await_cgroup: Callable[[], None] | None = None
    signals_reset: bool = False
    state_json: str = "{}"
    oom_score_set: bool = False


class InitError(Exception):
    pass


def child_main(req: InitRequest) -> NoReturn:
    """C1: namespaces, then fork C2 and report its host pid."""
    status = 1
    try:
        linux.set_dumpable(False)
        _use_stdio(req)
        if maps_first(req):
            # Everything but the cgroup namespace now; the runtime moves the init into the
            # cgroups (a cgroup v1 migration waits for an RCU grace period) while it builds
            # the rootfs, which waits for that only when it needs the cgroups.
            _enter_namespaces(req, cgroup=False)
            req.await_cgroup = lambda: _enter_cgroup(req)
        else:
            req.sync.expect("go", req.container_id)  # the runtime has put us in the cgroups
            _read_own_cgroups(req)
            _enter_namespaces(req)
        reported_r, reported_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(reported_w)
            os.read(reported_r, 1)  # speak on the channel only after our pid was reported
            os.close(reported_r)
            init_main(req)
        os.close(reported_r)
        req.sync.send("pid", pid=pid)
        os.write(reported_w, b"1")
        status = 0
    except BaseException as exc:
        _report(req.sync, exc)
    os._exit(status)


def maps_first(req: InitRequest) -> bool:
    """A new user namespace and nothing to join: the runtime writes the id maps first, then
    moves the init (not the first child) into the cgroups while the init builds the rootfs."""
    return "user" in req.new_namespaces and not req.join_namespaces


def _read_own_cgroups(req: InitRequest) -> None:
    """Now in the container's cgroups, before its cgroup namespace hides their paths: in a
    user namespace, /sys/fs/cgroup binds them (cgroup v1 cannot be mounted there)."""
    userns = "user" in req.new_namespaces or any(k == "user" for k, _ in req.join_namespaces)
    if req.cgroup_mounts is not None and userns:
        req.cgroup_mounts.own_paths = read_own_cgroups()


def _use_stdio(req: InitRequest) -> None:
    if req.stdio_fds is None:
        return
    for target, fd in enumerate(req.stdio_fds):
        if fd != target:
            os.dup2(fd, target)
    for fd in set(req.stdio_fds):
        if fd > 2:
            os.close(fd)
    req.stdio_fds = None


def can_fork_directly(req: InitRequest) -> bool:
    """Without a user namespace, the runtime can fork the init itself (one fork instead of
    two): see ``container._fork_into``."""
    return "user" not in req.new_namespaces and all(k != "user" for k, _ in req.join_namespaces)


def direct_main(req: InitRequest) -> NoReturn:
    """The init on the direct path: already in its PID namespace. It creates the other
    namespaces and builds the rootfs while the runtime moves it into its cgroup (a cgroup v1
    migration waits for an RCU grace period, milliseconds here); it waits for that ("go")
    only before it needs the cgroup: its cgroup namespace, a cgroup mount, a hook, exec."""
    try:
        linux.set_dumpable(False)
        _use_stdio(req)
        _reset_signals()
        req.signals_reset = True
        flags = 0
        for kind in req.new_namespaces:
            if kind not in ("pid", "cgroup"):
                flags |= NAMESPACE_FLAGS[kind]
        if flags:
            linux.unshare(flags)
        # Open every namespace first: once in the container's mount namespace, the
        # runtime's /proc paths name nothing.
        req.ns_fds = [(k, _open_ns(p, k)) for k, p in req.join_namespaces if k != "pid"]
        for kind, fd in req.ns_fds:
            if kind != "cgroup":
                _setns_fd(fd, kind)
        req.await_cgroup = lambda: _enter_cgroup(req)
        if req.exec_mode or any(k == "cgroup" for k, _ in req.ns_fds):
            _enter_cgroup(req)
    except BaseException as exc:
        _report(req.sync, exc)
        os._exit(1)
    init_main(req)


def _enter_cgroup(req: InitRequest) -> None:
    """Wait until the runtime has moved us into the cgroup, then take its namespace."""
    if req.in_cgroup:
        return
    req.sync.expect("go", req.container_id)
    req.in_cgroup = True
    _read_own_cgroups(req)
    if "cgroup" in req.new_namespaces:
        linux.unshare(linux.CLONE_NEWCGROUP)
    for kind, fd in req.ns_fds:
        if kind == "cgroup":
            _setns_fd(fd, kind)
    for _, fd in req.ns_fds:
        os.close(fd)
    req.ns_fds = []


def _enter_namespaces(req: InitRequest, *, cgroup: bool = True) -> None:
    joined = dict(req.join_namespaces)
    if "user" in joined:
        setns_path(joined.pop("user"), "user")
    elif "user" in req.new_namespaces:
        if not req.join_namespaces and os.geteuid() == 0:
            req.rootfs, req.config = userns.stage_sources(req.rootfs, req.config)
            # Only when nothing else must be joined: the owner has no rights on the host's
            # other namespaces. /proc/self is root's while we are not dumpable: set
            # oom_score_adj while we are root.
            if "oomScoreAdj" in req.process and userns.owner(req.config) is not None:
                creds.set_oom_score_adj(int(req.process["oomScoreAdj"]))
                req.oom_score_set = True
            userns.become_owner(req.config)
        linux.unshare(linux.CLONE_NEWUSER)
        req.sync.send("userns")
        req.sync.expect("mapped", req.container_id)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    for kind in NS_PROC_NAMES:
        if kind in joined:
            setns_path(joined[kind], kind)
    flags = 0
    for kind in req.new_namespaces:
        if kind != "user" and (cgroup or kind != "cgroup"):
            flags |= NAMESPACE_FLAGS[kind]
    if flags:
        linux.unshare(flags)


def _open_ns(path: str, kind: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InitError(f"{kind} namespace {path}: {exc.strerror}") from exc


def _setns_fd(fd: int, kind: str) -> None:
    try:
        linux.setns(fd, NAMESPACE_FLAGS[kind])
    except OSError as exc:
        raise InitError(f"joining {kind} namespace: {exc.strerror}") from exc


def setns_path(path: str, kind: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, NAMESPACE_FLAGS[kind])
    except OSError as exc:
        raise InitError(f"joining {kind} namespace {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def _report(sync: SyncChannel, exc: BaseException) -> None:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        message = f"{message} ({_where(exc)})"
    with contextlib.suppress(OSError):
        sync.send("error", message=message)


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name if tb is not None else "?"


def _reset_signals() -> None:
    """Default dispositions and an empty mask, whatever the runtime inherited (glibc's
    reserved real-time signals included: they can arrive ignored too)."""
    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError):
            linux.signal_default(signum)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _lock_imports() -> None:
    """After pivot_root, host paths on sys.path would name files of the image: an import
    from there would run the image's code as the runtime. Make every import fail instead."""
    sys.path.clear()
    sys.path_importer_cache.clear()
    sys.path_hooks.clear()
    sys.meta_path[:] = [f for f in sys.meta_path if getattr(f, "__name__", "") != "PathFinder"]


def init_main(req: InitRequest) -> NoReturn:
    """C2: the container's init until it execs the user's process."""
    try:
        if not req.signals_reset:
            _reset_signals()
        if req.exec_mode:
            _lock_imports()
            _setup_exec(req)
        else:
            _setup_container(req)
        path = _find_executable(req.process)
        _finalize(req)
        req.sync.send("created")
        req.sync.close()
        if req.fifo_fd >= 0:
            _wait_for_start(req)
    except BaseException as exc:
        _report(req.sync, exc)
        os._exit(1)
    _exec(req, path)


def _setup_container(req: InitRequest) -> None:
    config = req.config
    builder = RootfsBuilder(
        config,
        req.rootfs,
        userns="user" in req.new_namespaces or any(k == "user" for k, _ in req.join_namespaces),
        cgroupns="cgroup" in req.new_namespaces,
        cgroup_mounts=req.cgroup_mounts,
        before_cgroup=req.await_cgroup,
    )
    os.umask(0o022)
    builder.prepare()
    if req.await_cgroup is not None:
        req.await_cgroup()
    if req.has_hooks:
        req.sync.send("hooks")
        message = req.sync.expect("hooks-done", req.container_id)
        req.state_json = message["state"]
        run_hooks(config, "createContainer", req.state_json)
    builder.pivot()
    _lock_imports()
    builder.mask_paths()
    builder.write_sysctls()
    builder.readonly_paths()
    if (config.get("root") or {}).get("readonly"):
        builder.readonly_root()
    builder.close()
    if "network" in req.new_namespaces:
        _loopback_up()
    if config.get("hostname"):
        linux.sethostname(config["hostname"])
    if config.get("domainname"):
        linux.setdomainname(config["domainname"])
    _setup_terminal(req)


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _loopback_up() -> None:
    """A new network namespace has only ``lo``, and down: bring it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _setup_exec(req: InitRequest) -> None:
    _setup_terminal(req)


def _setup_terminal(req: InitRequest) -> None:
    process = req.process
    if not process.get("terminal"):
        return
    if req.console is None:
        raise InitError("process.terminal is set but there is no console socket")
    user = process.get("user") or {}
    size = process.get("consoleSize") or {}
    master, peer = terminal.open_pty(
        int(user.get("uid", 0)),
        int(user.get("gid", 0)),
        int(size.get("height", 0)),
        int(size.get("width", 0)),
    )
    terminal.send_master(req.console, master)
    os.close(master)
    req.console.close()
    req.console = None
    terminal.make_controlling(peer)


def _env(process: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.get("env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _find_executable(process: dict[str, Any]) -> str:
    name = process["args"][0]
    if "/" in name:
        if not os.path.exists(name):
            raise InitError(f'exec: "{name}": stat {name}: no such file or directory')
        return str(name)
    search = _env(process).get("PATH", DEFAULT_PATH)
    for directory in search.split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise InitError(f'exec: "{name}": executable file not found in $PATH')


def _finalize(req: InitRequest) -> None:
    process = req.process
    if process.get("rlimits"):
        creds.set_rlimits(process["rlimits"])
    if "oomScoreAdj" in process and not req.oom_score_set:
        creds.set_oom_score_adj(int(process["oomScoreAdj"]))
    keep = {req.sync.fileno(), req.fifo_fd}
    if req.console is not None:
        keep.add(req.console.fileno())
    close_fds_except(keep)
    caps = creds.CapSets.from_spec(process.get("capabilities"))
    creds.drop_bounding(caps.bounding, linux.last_cap())
    if req.seccomp_program is not None and not process.get("noNewPrivileges"):
        seccomp.install(
            req.seccomp_program,
            (req.config.get("linux") or {}).get("seccomp", {}).get("flags") or [],
        )
        req.seccomp_program = None
    creds.switch_user(process.get("user") or {}, caps)
    _enter_cwd(process.get("cwd") or "/")
    if process.get("noNewPrivileges"):
        linux.set_no_new_privs()


def close_fds_except(keep: set[int]) -> None:
    """No descriptor of the runtime may reach the container (CVE-2024-21626)."""
    low = 3
    for fd in sorted(f for f in keep if f >= 3):
        if fd > low:
            linux.close_range(low, fd - 1)
        low = fd + 1
    linux.close_range(low)


def _enter_cwd(cwd: str) -> None:
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise InitError(f"process.cwd {cwd}: {exc.strerror}") from exc
    try:
        actual = os.getcwd()
    except FileNotFoundError:
        actual = "(unreachable)"
    except OSError as exc:
        raise InitError(f"process.cwd {cwd}: cannot verify it with getcwd: {exc.strerror}") from exc
    if not actual.startswith("/"):
        raise InitError(f"process.cwd {cwd} is outside the container's root")


def _wait_for_start(req: InitRequest) -> None:
    """Block until ``start`` writes a byte to the exec FIFO."""
    while True:
        try:
            data = os.read(req.fifo_fd, 1)
        except InterruptedError:
            continue
        if data:
            break
    os.close(req.fifo_fd)
    req.fifo_fd = -1
    if req.has_hooks:
        run_hooks(req.config, "startContainer", req.state_json)


def _exec(req: InitRequest, path: str) -> NoReturn:
    process = req.process
    try:
        if req.seccomp_program is not None:
            flags = (req.config.get("linux") or {}).get("seccomp", {}).get("flags") or []
            seccomp.install(req.seccomp_program, flags)
        os.execve(path, process["args"], _env(process))
    except OSError as exc:
        os.write(2, f"exec {path}: {exc.strerror}\n".encode())
        os._exit(126 if exc.errno == 13 else 127)
    except BaseException as exc:
        os.write(2, f"exec {path}: {exc}\n".encode())
        os._exit(127)
