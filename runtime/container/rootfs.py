"""A container's root filesystem: an overlayfs of its image's layers with its own upper
directory, mounted (privately) under the container's folder."""

from __future__ import annotations

import errno
import logging
import os

from runtime import linux
from runtime.errors import ContainerRuntimeError

logger = logging.getLogger(__name__)


def mount_overlay(layers: list[str], container_dir: str) -> str:
    """Mount ``layers`` (lowest first) with an upper dir in ``container_dir``; returns the
    merged directory. Idempotent: an existing mount is kept."""
    merged = os.path.join(container_dir, "rootfs")
    upper = os.path.join(container_dir, "upper")
    work = os.path.join(container_dir, "work")
    for path in (merged, upper, work):
        os.makedirs(path, mode=0o755, exist_ok=True)
    if os.path.ismount(merged):
        return merged
    if not layers:
        raise ContainerRuntimeError(
            f"container {os.path.basename(container_dir)}: image has no layers"
        )
    lower = ":".join(reversed(layers))
    data = f"lowerdir={lower},upperdir={upper},workdir={work},index=off,xino=off"
    try:
        linux.mount("overlay", merged, "overlay", linux.MS_NODEV, data)
        linux.mount(None, merged, None, linux.MS_PRIVATE)
    except OSError as exc:
        raise ContainerRuntimeError(f"overlay mount at {merged}: {exc.strerror}") from exc
    return merged


def unmount_overlay(container_dir: str) -> None:
    merged = os.path.join(container_dir, "rootfs")
    for _ in range(3):
        try:
            linux.umount(merged, linux.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            logger.warning("unmounting %s: %s", merged, exc.strerror)
        if not os.path.ismount(merged):
            return
