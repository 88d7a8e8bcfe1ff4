"""The container's filesystem view, built inside its new mount namespace: the mounts of
config.json, /dev with only the standard devices, pivot_root with the old root detached,
masked and read-only paths.

Every mount destination is opened inside the rootfs (``paths``) and the mount is made onto
``/proc/self/fd/N``, so a symlink planted in the image can never redirect a mount to the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runtime import linux
from runtime.oci import paths
from runtime.oci.mounts import (
    BIND_REMOUNT_FLAGS,
    NO_SYMLINK_TYPES,
    PROPAGATION,
    MountSpec,
    parse_mount,
)

logger = logging.getLogger(__name__)

# (path, major, minor): the devices every container gets when it has its own /dev.
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)


class RootfsError(Exception):
    """A step of the rootfs set-up failed; the message names the step and the path."""


@contextlib.contextmanager
def _fd(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


@dataclass
class CgroupMountInfo:
    """What init needs to know about the host's cgroup mounts to build /sys/fs/cgroup."""

    # (name inside the container mount, fstype, superblock options, host mount point)
    hierarchies: list[tuple[str, str, str, str]]
    # hierarchy options ("cpu", "name=systemd", "" for cgroup2) -> own path in it
    own_paths: dict[str, str]


def read_cgroup_mounts(
    mountinfo: str = "/proc/self/mountinfo", proc_cgroups: str = "/proc/cgroups"
) -> CgroupMountInfo:
    with open(proc_cgroups) as f:
        known = {line.split()[0] for line in f if not line.startswith("#")}
    hierarchies: list[tuple[str, str, str, str]] = []
    with open(mountinfo) as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fstype, _source, superopts = post.split()[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mountpoint = pre.split()[4]
            opts = ""
            if fstype == "cgroup":
                wanted = (o for o in superopts.split(",") if o in known or o.startswith("name="))
                opts = ",".join(wanted)
            hierarchies.append((os.path.basename(mountpoint), fstype, opts, mountpoint))
    return CgroupMountInfo(hierarchies, read_own_cgroups())


def read_own_cgroups() -> dict[str, str]:
    """Our cgroup in each hierarchy ("cpu,cpuacct", "name=systemd", "" for cgroup2)."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _num, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
    return own


class RootfsBuilder:
    """Runs in the container's init, in its mount namespace, before pivot_root."""

    def __init__(
        self,
        config: dict[str, Any],
        rootfs: str,
        *,
        userns: bool,
        cgroupns: bool,
        cgroup_mounts: CgroupMountInfo | None,
        before_cgroup: Callable[[], None] | None = None,
    ) -> None:
        self.before_cgroup = before_cgroup
        self.config = config
        self.rootfs = rootfs
        self.userns = userns
        self.cgroupns = cgroupns
        self.cgroup_mounts = cgroup_mounts
        self.linux: dict[str, Any] = config.get("linux") or {}
        self.root_fd = -1

    def prepare(self) -> None:
        """Everything up to, not including, pivot_root."""
        propagation = PROPAGATION.get(
            self.linux.get("rootfsPropagation") or "rprivate",
            linux.MS_PRIVATE | linux.MS_REC,
        )
        self._step("make / private", linux.mount, None, "/", None, propagation)
        if propagation & linux.MS_SHARED:
            self._parent_private()
        self._step(
            "bind the rootfs",
            linux.mount,
            self.rootfs,
            self.rootfs,
            None,
            linux.MS_BIND | linux.MS_REC,
        )
        self.root_fd = os.open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        has_dev = False
        for entry in self.config.get("mounts") or []:
            spec = parse_mount(entry)
            has_dev = has_dev or os.path.normpath(spec.destination) == "/dev"
            self.mount(spec)
        if has_dev:
            self.create_default_devices()
        self.create_devices(self.linux.get("devices") or [])

    def _parent_private(self) -> None:
        """pivot_root refuses a new root whose parent mount is shared: make just that
        mount private, as runc does (the rootfs itself keeps the asked propagation)."""
        best = "/"
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4]
                inside = self.rootfs == point or self.rootfs.startswith(point.rstrip("/") + "/")
                if inside and point != self.rootfs and len(point) > len(best):
                    best = point
        self._step(
            "make the rootfs's parent mount private",
            linux.mount,
            None,
            best,
            None,
            linux.MS_PRIVATE,
        )

    def _step(self, what: str, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except OSError as exc:
            raise RootfsError(f"{what}: {exc.strerror or exc}") from exc

    # -- mounts -----------------------------------------------------------------------------

    def _target(self, spec: MountSpec, is_dir: bool) -> int:
        dest = spec.destination
        try:
            if spec.fstype in NO_SYMLINK_TYPES or (spec.fstype == "tmpfs" and dest == "/dev"):
                return self._real_dir(dest)
            return paths.ensure_mount_target(self.root_fd, dest, is_dir=is_dir)
        except OSError as exc:
            raise RootfsError(f"mount destination {dest}: {exc.strerror or exc}") from exc

    def _real_dir(self, dest: str) -> int:
        """A destination that may not pass through any symlink (proc, sysfs, /dev ...)."""
        fd = paths.mkdir_all_in_root(self.root_fd, dest)
        os.close(fd)
        return linux.openat2(
            self.root_fd,
            dest.lstrip("/") or ".",
            os.O_PATH | os.O_DIRECTORY,
            resolve=linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_SYMLINKS,
        )

    def mount(self, spec: MountSpec) -> None:
        if spec.fstype in ("cgroup", "cgroup2"):
            self.mount_cgroup(spec)
            return
        source = spec.source
        is_dir = True
        if spec.bind:
            if not os.path.isabs(source):
                source = os.path.join(os.path.dirname(self.rootfs), source)
            try:
                is_dir = stat.S_ISDIR(os.stat(source).st_mode)
            except OSError as exc:
                raise RootfsError(f"bind source {source}: {exc.strerror}") from exc
        with _fd(self._target(spec, is_dir)) as target:
            where = paths.fd_path(target)
            flags = spec.flags & ~BIND_REMOUNT_FLAGS if spec.bind else spec.flags
            self._step(
                f"mount {spec.destination}",
                linux.mount,
                source,
                where,
                None if spec.bind else spec.fstype,
                flags,
                None if spec.bind else (spec.data or None),
            )
        self._finish_mount(spec)

    def _finish_mount(self, spec: MountSpec) -> None:
        """Flags a bind mount takes only on remount, then propagation flags."""
        need_remount = spec.bind and spec.flags & BIND_REMOUNT_FLAGS
        if not need_remount and not spec.propagation:
            return
        with _fd(paths.open_in_root(self.root_fd, spec.destination)) as mounted:
            where = paths.fd_path(mounted)
            if need_remount:
                self.remount(where, spec.flags & BIND_REMOUNT_FLAGS, spec.destination)
            for flag in spec.propagation:
                self._step(
                    f"propagation of {spec.destination}", linux.mount, None, where, None, flag
                )

    def remount(self, where: str, flags: int, name: str) -> None:
        """Bind-remount keeping the flags the kernel locked on the mount (nosuid, nodev...)."""
        current = os.statvfs(where).f_flag
        locked = 0
        for st_flag, ms_flag in (
            (os.ST_NOSUID, linux.MS_NOSUID),
            (os.ST_NODEV, linux.MS_NODEV),
            (os.ST_NOEXEC, linux.MS_NOEXEC),
            (os.ST_RDONLY, linux.MS_RDONLY),
        ):
            if current & st_flag and self.userns:
                locked |= ms_flag
        self._step(
            f"remount {name}",
            linux.mount,
            None,
            where,
            None,
            linux.MS_REMOUNT | linux.MS_BIND | flags | locked,
        )

    def mount_cgroup(self, spec: MountSpec) -> None:
        if self.before_cgroup is not None:
            self.before_cgroup()
        info = self.cgroup_mounts
        if info is None:
            raise RootfsError(f"mount {spec.destination}: no cgroup hierarchies found")
        v2_only = len(info.hierarchies) == 1 and info.hierarchies[0][1] == "cgroup2"
        if v2_only:
            _, _, _, host = info.hierarchies[0]
            self._mount_hierarchy(spec, spec.destination, "cgroup2", "", host, info)
            return
        tmpfs = MountSpec(
            spec.destination,
            "tmpfs",
            "tmpfs",
            linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
            (),
            "mode=755",
            False,
        )
        self.mount(tmpfs)
        for name, fstype, opts, host in info.hierarchies:
            dest = f"{spec.destination.rstrip('/')}/{name}"
            self._mount_hierarchy(spec, dest, fstype, opts, host, info)
        if spec.readonly:
            with _fd(self._real_dir(spec.destination)) as fd:
                self.remount(paths.fd_path(fd), tmpfs.flags | linux.MS_RDONLY, spec.destination)

    def _mount_hierarchy(
        self, spec: MountSpec, dest: str, fstype: str, opts: str, host: str, info: CgroupMountInfo
    ) -> None:
        flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        with _fd(self._real_dir(dest)) as target:
            where = paths.fd_path(target)
            native = self.cgroupns and (fstype == "cgroup2" or not self.userns)
            if native:
                self._step(f"mount {dest}", linux.mount, fstype, where, fstype, flags, opts or None)
            else:
                own = info.own_paths.get(opts if fstype == "cgroup" else "", "/")
                source = os.path.join(host, own.lstrip("/"))
                self._step(
                    f"bind {dest}", linux.mount, source, where, None, linux.MS_BIND | linux.MS_REC
                )
        if spec.readonly:
            with _fd(self._real_dir(dest)) as fd:
                self.remount(paths.fd_path(fd), flags | linux.MS_RDONLY, dest)

    # -- devices ----------------------------------------------------------------------------

    def create_default_devices(self) -> None:
        for path, major, minor in DEFAULT_DEVICES:
            self.create_device(path, stat.S_IFCHR, major, minor, 0o666, 0, 0)
        with _fd(paths.mkdir_all_in_root(self.root_fd, "/dev")) as dev:
            for target, link in DEV_SYMLINKS:
                with contextlib.suppress(FileExistsError):
                    os.symlink(target, os.path.basename(link), dir_fd=dev)

    def create_devices(self, devices: list[dict[str, Any]]) -> None:
        kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
        for dev in devices:
            self.create_device(
                dev["path"],
                kinds[dev["type"]],
                int(dev.get("major", 0)),
                int(dev.get("minor", 0)),
                int(dev.get("fileMode", 0o666)),
                int(dev.get("uid", 0)),
                int(dev.get("gid", 0)),
            )

    def create_device(
        self, path: str, kind: int, major: int, minor: int, mode: int, uid: int, gid: int
    ) -> None:
        parent_path, name = os.path.split(os.path.normpath(path))
        with _fd(paths.mkdir_all_in_root(self.root_fd, parent_path)) as parent:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=parent)
            if self.userns and kind != stat.S_IFIFO:
                self._bind_device(parent, name, path)
                return
            try:
                os.mknod(name, kind | (mode & 0o7777), os.makedev(major, minor), dir_fd=parent)
            except OSError as exc:
                raise RootfsError(f"mknod {path}: {exc.strerror}") from exc
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            os.chmod(name, mode & 0o7777, dir_fd=parent, follow_symlinks=False)

    def _bind_device(self, parent: int, name: str, path: str) -> None:
        """In a user namespace mknod is not allowed: bind the host's node instead."""
        fd = os.open(
            name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
        )
        os.close(fd)
        with _fd(paths.open_in_root(self.root_fd, path)) as target:
            self._step(
                f"bind device {path}", linux.mount, path, paths.fd_path(target), None, linux.MS_BIND
            )

    # -- pivot and after ------------------------------------------------------------------------

    def pivot(self) -> None:
        """pivot_root(".", ".") and detach the old root, so no host path stays reachable."""
        os.fchdir(self.root_fd)
        self._step("pivot_root", linux.pivot_root, ".", ".")
        self._step(
            "make the old root private", linux.mount, None, ".", None, linux.MS_SLAVE | linux.MS_REC
        )
        self._step("detach the old root", linux.umount, ".", linux.MNT_DETACH)
        os.chdir("/")
        os.close(self.root_fd)
        self.root_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def mask_paths(self) -> None:
        for path in self.linux.get("maskedPaths") or []:
            try:
                fd = paths.open_in_root(self.root_fd, path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with _fd(fd):
                where = paths.fd_path(fd)
                if stat.S_ISDIR(os.stat(where).st_mode):
                    self._step(
                        f"mask {path}",
                        linux.mount,
                        "tmpfs",
                        where,
                        "tmpfs",
                        linux.MS_RDONLY,
                        "size=0",
                    )
                else:
                    self._step(f"mask {path}", linux.mount, "/dev/null", where, None, linux.MS_BIND)

    def readonly_paths(self) -> None:
        flags = linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
        for path in self.linux.get("readonlyPaths") or []:
            try:
                fd = paths.open_in_root(self.root_fd, path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with _fd(fd):
                self._step(
                    f"bind {path}",
                    linux.mount,
                    paths.fd_path(fd),
                    paths.fd_path(fd),
                    None,
                    linux.MS_BIND | linux.MS_REC,
                )
            with _fd(paths.open_in_root(self.root_fd, path)) as mounted:
                self.remount(paths.fd_path(mounted), flags, path)

    def write_sysctls(self) -> None:
        for key, value in (self.linux.get("sysctl") or {}).items():
            rel = "proc/sys/" + key.replace(".", "/")
            try:
                fd = linux.openat2(
                    self.root_fd,
                    rel,
                    os.O_WRONLY,
                    resolve=linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_SYMLINKS,
                )
            except OSError as exc:
                raise RootfsError(f"sysctl {key}: {exc.strerror}") from exc
            with _fd(fd):
                self._step(f"sysctl {key}", os.write, fd, str(value).encode())

    def readonly_root(self) -> None:
        self.remount("/", linux.MS_RDONLY, "/")

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
