"""User namespaces for engine containers: a distinct range of host uids and gids per
container, and the idmapped mounts that let image layers and volumes be shared between
containers whose roots are different host users.

A container's root is host uid ``base`` (and gid ``base``); its uid N is ``base + N``. On
disk, image layers and volumes keep the ids the image (or the container) sees: 0 for root.
They reach the container through idmapped mounts, which show id N as ``base + N``. Only the
writable layer (the overlay's upper directory) holds host ids: it belongs to one container.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from runtime import linux
from runtime.errors import ContainerRuntimeError

# Ranges start at 2^30: far above the ids of the host's users and above the ranges that
# /etc/subuid conventionally hands out (from 100000), below 2^32 - 1 (the invalid id).
FIRST_BASE = 1 << 30
LAST_ID = (1 << 32) - 2
_CLONE = linux.OPEN_TREE_CLONE | linux.OPEN_TREE_CLOEXEC


@dataclass(frozen=True)
class IdRange:
    """Container ids 0..size-1 are host ids base..base+size-1 (uids and gids alike)."""

    base: int
    size: int

    def mappings(self) -> list[dict[str, int]]:
        return [{"containerID": 0, "hostID": self.base, "size": self.size}]


def allocate(
    used: Iterable[int], size: int, first: int = FIRST_BASE, prefer: Iterable[int] = ()
) -> int:
    """The lowest free range base, given the bases in use (all ranges are ``size`` long);
    the lowest free one of ``prefer`` first."""
    taken = set(used)
    for base in sorted(prefer):
        if base not in taken:
            return base
    base = first
    while base + size - 1 <= LAST_ID:
        if base not in taken:
            return base
        base += size
    raise ContainerRuntimeError("no free range of user ids left for a new container")


def namespace_fd(ids: IdRange) -> int:
    """An fd of a user namespace with the container's mapping, for MOUNT_ATTR_IDMAP."""
    try:
        return linux.userns_fd(ids.base, ids.size)
    except OSError as exc:
        raise ContainerRuntimeError(
            f"cannot create a user namespace to map ids: {exc.strerror or exc}"
        ) from exc


class NamespacePool:
    """User namespaces made ahead for the ranges about to be used. Making one costs a fork
    of the calling process (milliseconds for a daemon); ``prepare`` runs off the critical
    path, ``take`` on it. Thread-safe; holds a few descriptors at most."""

    KEEP = 4

    def __init__(self, size: int) -> None:
        self.size = size
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def ready(self) -> list[int]:
        """The bases whose namespaces are made."""
        with self._lock:
            return list(self._fds)

    def take(self, base: int) -> int:
        """An fd of a user namespace mapping the range at ``base``; the caller closes it."""
        with self._lock:
            fd = self._fds.pop(base, None)
        return fd if fd is not None else namespace_fd(IdRange(base, self.size))

    def prepare(self, base: int) -> None:
        with self._lock:
            if base in self._fds:
                return
        fd = namespace_fd(IdRange(base, self.size))
        with self._lock:
            if base in self._fds or len(self._fds) >= self.KEEP:
                os.close(fd)
                return
            self._fds[base] = fd

    def close(self) -> None:
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)


def idmapped_tree(path: str, userns: int) -> int:
    """A detached, idmapped clone of the tree at ``path`` (its submounts too, when their file
    systems allow an idmapping; else just the top mount)."""
    try:
        fd = linux.open_tree(path, _CLONE | linux.AT_RECURSIVE)
    except OSError as exc:
        raise ContainerRuntimeError(f"cannot clone the mount at {path}: {exc.strerror}") from exc
    try:
        try:
            linux.mount_setattr(
                fd,
                linux.MOUNT_ATTR_IDMAP,
                userns_fd=userns,
                flags=linux.AT_EMPTY_PATH | linux.AT_RECURSIVE,
            )
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            os.close(fd)
            fd = -1
            fd = linux.idmapped_tree(path, userns)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        raise ContainerRuntimeError(
            f"cannot idmap {path} (its file system may not support idmapped mounts): {exc.strerror}"
        ) from exc
    return fd


def attach(tree: int, target: str, is_dir: bool) -> None:
    """Attach a detached tree at ``target``, made as an empty directory or file."""
    if is_dir:
        os.makedirs(target, mode=0o700, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    try:
        linux.move_mount(tree, target)
    except OSError as exc:
        raise ContainerRuntimeError(f"cannot attach a mount at {target}: {exc.strerror}") from exc


def bind_idmapped(source: str, target: str, userns: int) -> None:
    """``target`` becomes a view of ``source`` in which id N reads as the range's N."""
    try:
        is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as exc:
        raise ContainerRuntimeError(f"bind source {source}: {exc.strerror}") from exc
    tree = idmapped_tree(source, userns)
    try:
        attach(tree, target, is_dir)
    finally:
        os.close(tree)


def mount_overlay(
    layers: list[str], upper: str, work: str, merged: str, userns: int, *, by_fd: bool = True
) -> None:
    """An overlay of ``layers`` (lowest first), each through an idmapped mount.

    Linux 6.13+ takes the layers as descriptors (``lowerdir+``): nothing is ever attached.
    Older kernels (5.19+) get each idmapped layer attached under ``merged``'s parent for the
    time of the mount call: the overlay keeps its own private clones of its layers, so they
    are detached right after."""
    trees: list[int] = []
    staged: list[str] = []
    try:
        for layer in reversed(layers):  # uppermost lower layer first, as lowerdir lists them
            trees.append(idmapped_tree(layer, userns))
        try:
            if by_fd:
                try:
                    _fsmount_overlay(trees, upper, work, merged)
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
            stage = os.path.join(os.path.dirname(merged), "lower")
            for i, tree in enumerate(trees):
                target = os.path.join(stage, str(i))
                attach(tree, target, True)
                staged.append(target)
            data = f"lowerdir={':'.join(staged)},upperdir={upper},workdir={work},index=off,xino=off"
            linux.mount("overlay", merged, "overlay", linux.MS_NODEV | linux.MS_NOSUID, data)
        except OSError as exc:
            raise ContainerRuntimeError(
                f"overlay mount at {merged} with idmapped layers: {exc.strerror}"
            ) from exc
    finally:
        for fd in trees:
            os.close(fd)
        for target in staged:
            with contextlib.suppress(OSError):
                linux.umount(target, linux.MNT_DETACH)
            with contextlib.suppress(OSError):
                os.rmdir(target)


def _fsmount_overlay(trees: list[int], upper: str, work: str, merged: str) -> None:
    fs = linux.fsopen("overlay")
    try:
        for tree in trees:
            linux.fsconfig(fs, linux.FSCONFIG_SET_FD, "lowerdir+", aux=tree)
        for key, value in (
            ("upperdir", upper),
            ("workdir", work),
            ("index", "off"),
            ("xino", "off"),
        ):
            linux.fsconfig(fs, linux.FSCONFIG_SET_STRING, key, value)
        linux.fsconfig(fs, linux.FSCONFIG_CMD_CREATE)
        mnt = linux.fsmount(fs, linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOSUID)
        try:
            linux.move_mount(mnt, merged)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)
