"""A container's root filesystem: an overlayfs of its image's layers with its own upper
directory, mounted (privately) under the container's folder.

The upper and work directories live on a file system of their own when the profile limits
the writable layer: a sparse ext4 image of that size and inode count on a loop device
(``writable.img`` mounted on ``writable/``). A container that fills its root then gets ENOSPC
from that file system, never from the host's disk. Sparse and mounted with ``discard``, the
image costs the host only what the container keeps written; its page cache is charged to the
container's memory cgroup like any file's. A tmpfs would have been simpler but costs RAM for
every byte written, for as long as the container exists, running or not.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import subprocess
import threading

from runtime import linux
from runtime.container import idmap
from runtime.container.idmap import IdRange
from runtime.errors import ContainerRuntimeError

logger = logging.getLogger(__name__)

WRITABLE = "writable"
WRITABLE_IMAGE = "writable.img"
# Idmapped views of a user-namespaced container's volumes and host folders.
BINDS = "binds"
_MKFS_TIMEOUT = 60


def mount_overlay(
    layers: list[str],
    container_dir: str,
    size: int | None = None,
    inodes: int | None = None,
    ids: IdRange | None = None,
    userns: int = -1,
    spares: WritablePool | None = None,
) -> str:
    """Mount ``layers`` (lowest first) with an upper dir in ``container_dir`` (on an ext4 of
    ``size`` bytes and ``inodes`` inodes, when given); returns the merged directory.
    With ``ids`` (and ``userns``, a user namespace of that mapping), the layers are seen
    through idmapped mounts and the upper dir belongs to the range's root.
    Idempotent: an existing mount is kept."""
    merged = os.path.join(container_dir, "rootfs")
    os.makedirs(merged, mode=0o755, exist_ok=True)
    if os.path.ismount(merged):
        return merged
    if not layers:
        raise ContainerRuntimeError(
            f"container {os.path.basename(container_dir)}: image has no layers"
        )
    base = _writable_base(container_dir, size, inodes, spares) if size else container_dir
    upper = os.path.join(base, "upper")
    work = os.path.join(base, "work")
    for path in (upper, work):
        os.makedirs(path, mode=0o755, exist_ok=True)
    try:
        if ids is not None:
            os.chown(upper, ids.base, ids.base)  # the container's "/" is its root's
            idmap.mount_overlay(layers, upper, work, merged, userns)
        else:
            lower = ":".join(reversed(layers))
            data = f"lowerdir={lower},upperdir={upper},workdir={work},index=off,xino=off"
            linux.mount("overlay", merged, "overlay", linux.MS_NODEV | linux.MS_NOSUID, data)
        linux.mount(None, merged, None, linux.MS_PRIVATE)
    except OSError as exc:
        raise ContainerRuntimeError(f"overlay mount at {merged}: {exc.strerror}") from exc
    return merged


def writable_dir(container_dir: str) -> str:
    """Where other files the container may write belong (/etc/hosts & co): on the limited
    file system when there is one."""
    path = os.path.join(container_dir, WRITABLE)
    return path if os.path.ismount(path) else container_dir


def _writable_base(
    container_dir: str, size: int, inodes: int | None, spares: WritablePool | None = None
) -> str:
    target = os.path.join(container_dir, WRITABLE)
    os.makedirs(target, mode=0o700, exist_ok=True)
    if os.path.ismount(target):
        return target
    # Imported here: only containers with a limited writable layer need loop devices.
    from runtime.volumes import disk, loop

    image = os.path.join(container_dir, WRITABLE_IMAGE)
    if spares is not None and not os.path.exists(image) and spares.take(image, target):
        return target
    try:
        if os.path.exists(image):
            disk.check_image(image)  # kept from before a host crash: no journal, so check
        else:
            _make_image(image, size, inodes)
        with loop.attached(image) as device:
            _mount_writable(device, target)
    except OSError as exc:
        raise ContainerRuntimeError(f"writable layer {image}: {exc.strerror or exc}") from exc
    return target


def _mount_writable(device: str, target: str) -> None:
    linux.mount(device, target, "ext4", linux.MS_NOSUID | linux.MS_NODEV, "discard")
    linux.mount(None, target, None, linux.MS_PRIVATE)


class WritablePool:
    """Writable layers made ahead, off the critical path of ``create``: a copy of the
    template attached to a loop device (~6 ms of the ~9 a layer costs), held until a
    container takes it, renames the image into its folder and mounts it. The daemon holds
    the devices; if it dies they detach themselves (autoclear) and ``discard_leftovers``
    deletes the images at the next start."""

    KEEP = 2
    PREFIX = "writable-spare-"

    def __init__(self, directory: str, templates: str, size: int, inodes: int | None) -> None:
        self.directory = directory
        self.templates = templates
        self.size = size
        self.inodes = inodes
        self._ready: list[tuple[str, int, str]] = []  # image, device fd, device path
        self._lock = threading.Lock()

    def discard_leftovers(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                if name.startswith(self.PREFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.directory, name))

    def prepare(self) -> None:
        from runtime.volumes import loop

        with self._lock:
            if len(self._ready) >= self.KEEP:
                return
        image = os.path.join(self.directory, f"{self.PREFIX}{secrets.token_hex(8)}.img")
        _make_image(image, self.size, self.inodes, self.templates)
        try:
            fd, device = loop.attach(image)
        except OSError:
            os.unlink(image)
            raise
        with self._lock:
            self._ready.append((image, fd, device))

    def take(self, image: str, target: str) -> bool:
        """Move a ready layer to ``image`` and mount it on ``target``; False if none."""
        with self._lock:
            if not self._ready:
                return False
            spare, fd, device = self._ready.pop()
        try:
            os.rename(spare, image)
            _mount_writable(device, target)
        except OSError as exc:
            logger.warning("a prepared writable layer could not be used: %s", exc)
            with contextlib.suppress(OSError):
                os.unlink(image if os.path.exists(image) else spare)
            return False
        finally:
            os.close(fd)  # the mount holds the device now; without one, it detaches
        return True

    def close(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for spare, fd, _ in ready:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(spare)


def _make_image(image: str, size: int, inodes: int | None, templates: str | None = None) -> None:
    """A sparse copy of a formatted template for this size and inode count, made once per
    engine root: mkfs.ext4 costs ~90 ms, copying its ~1 MiB of metadata a few."""
    if templates is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(image)))
        templates = os.path.join(root, "templates")
    template = os.path.join(templates, f"writable-{size}-{inodes or 0}.img")
    if not os.path.exists(template):
        os.makedirs(templates, mode=0o700, exist_ok=True)
        scratch = f"{template}.{secrets.token_hex(8)}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)
        _format_image(scratch, size, inodes)
        os.replace(scratch, template)
    try:
        _sparse_copy(template, image)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(image)
        raise


def _sparse_copy(source: str, dest: str) -> None:
    """Copy only the data extents (SEEK_DATA/SEEK_HOLE); holes stay holes."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            os.ftruncate(dst, size)
            offset = 0
            while offset < size:
                try:
                    start = os.lseek(src, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(src, start, os.SEEK_HOLE)
                done = start
                while done < end:
                    done += os.copy_file_range(src, dst, end - done, done, done)
                offset = end
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _format_image(image: str, size: int, inodes: int | None) -> None:
    """A sparse ext4 without a journal (scratch space; the journal costs space and writes)."""
    fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    args = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal"]
    if inodes:
        args += ["-N", str(inodes)]
    args += ["-E", "root_owner=0:0,lazy_itable_init=1,nodiscard", image]
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=_MKFS_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        os.unlink(image)
        raise OSError(errno.EIO, f"mkfs.ext4: {exc}", image) from exc
    if result.returncode != 0:
        os.unlink(image)
        raise OSError(errno.EIO, f"mkfs.ext4 failed: {result.stderr.strip()}", image)


def unmount_overlay(container_dir: str) -> None:
    """Detach the container's mounts: its binds, its rootfs and its writable layer."""
    binds = os.path.join(container_dir, BINDS)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(binds):
            _unmount(os.path.join(binds, name))
    merged = os.path.join(container_dir, "rootfs")
    for target in (merged, os.path.join(container_dir, WRITABLE)):
        _unmount(target)


def _unmount(target: str) -> None:
    for _ in range(3):
        try:
            linux.umount(target, linux.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            logger.warning("unmounting %s: %s", target, exc.strerror)
        if not os.path.ismount(target):
            return
