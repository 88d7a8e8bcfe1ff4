"""Loop devices for sized volumes, through the loop driver's ioctls (no ``losetup``).

A device is configured with ``LO_FLAGS_AUTOCLEAR``: the kernel detaches it when its last
opener goes away, so once a volume's file system is mounted and we close our descriptor, the
mount alone keeps it bound, and unmounting (here or in the last mount namespace holding a copy)
frees it. A crash between attaching and mounting cannot leak a device either.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

LOOP_CLR_FD = 0x4C01
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82

LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16

# struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
# loop_info64: device, inode, rdevice, offset, sizelimit (u64); number, encrypt_type,
# encrypt_key_size, flags (u32); file_name[64], crypt_name[64], encrypt_key[32]; init[2] (u64)
_LOOP_CONFIG = struct.Struct("=II QQQQQ IIII 64s64s32s QQ 64x")
_LO_NAME_SIZE = 64
# LOOP_CTL_GET_FREE hands the same free device to racing callers; the loser gets EBUSY.
_ATTACH_ATTEMPTS = 16


@dataclass(frozen=True)
class LoopDevice:
    """A bound loop device as sysfs shows it; ``backing_file`` is the path the kernel
    resolved, ``deleted`` whether that file has been unlinked since."""

    name: str
    backing_file: str
    deleted: bool


def _config(backing_fd: int, image: str, flags: int, block_size: int) -> bytes:
    name = os.fsencode(image)[: _LO_NAME_SIZE - 1]
    return _LOOP_CONFIG.pack(
        backing_fd, block_size, 0, 0, 0, 0, 0, 0, 0, 0, flags, name, b"", b"", 0, 0
    )


def _configure_free(control_fd: int, config: bytes, dev_dir: str) -> tuple[int, str]:
    """Bind the first free device; returns an open descriptor of it and its path."""
    for _ in range(_ATTACH_ATTEMPTS):
        number = fcntl.ioctl(control_fd, LOOP_CTL_GET_FREE)
        path = os.path.join(dev_dir, f"loop{number}")
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, LOOP_CONFIGURE, config)
        except OSError as exc:
            os.close(fd)
            if exc.errno != errno.EBUSY:
                raise
            continue
        return fd, path
    raise OSError(errno.EBUSY, "no free loop device after retries", dev_dir)


def attach(
    image: str,
    *,
    block_size: int = 4096,
    direct_io: bool = True,
    control: str = "/dev/loop-control",
    dev_dir: str = "/dev",
) -> tuple[int, str]:
    """Bind ``image`` to a free loop device: an open fd of the device and its path. The
    device detaches itself once that fd is closed, unless something else (a mount) opened
    it meanwhile. Direct I/O keeps the image's pages out of the host's page cache, so a
    volume's data is cached once, by the file system inside it."""
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_DIRECT_IO if direct_io else 0)
    backing_fd = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control_fd = os.open(control, os.O_RDWR | os.O_CLOEXEC)
        try:
            config = _config(backing_fd, image, flags, block_size)
            device_fd, path = _configure_free(control_fd, config, dev_dir)
        finally:
            os.close(control_fd)
    finally:
        os.close(backing_fd)
    logger.debug("attached %s to %s", image, path)
    return device_fd, path


@contextlib.contextmanager
def attached(image: str, **options: Any) -> Iterator[str]:
    """``attach`` for a ``with`` block: the device detaches itself when the block ends
    unless something opened it meanwhile (mount it inside the block)."""
    device_fd, path = attach(image, **options)
    try:
        yield path
    finally:
        os.close(device_fd)


def bound(sys_block: str = "/sys/block") -> list[LoopDevice]:
    """Every bound loop device; unbound ones have no ``loop/backing_file``."""
    found: list[LoopDevice] = []
    try:
        names = sorted(os.listdir(sys_block))
    except FileNotFoundError:  # no sysfs (a minimal container): no loop devices either
        return found
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(os.path.join(sys_block, name, "loop", "backing_file")) as f:
                backing = f.read().rstrip("\n")
        except (FileNotFoundError, NotADirectoryError):
            continue
        deleted = backing.endswith(" (deleted)")
        if deleted:
            backing = backing.removesuffix(" (deleted)")
        found.append(LoopDevice(name, backing, deleted))
    return found


def bound_to(image: str, sys_block: str = "/sys/block") -> list[LoopDevice]:
    """Devices whose backing file is ``image`` (and has not been deleted)."""
    real = os.path.realpath(image)
    return [d for d in bound(sys_block) if d.backing_file == real and not d.deleted]


def detach(name: str, dev_dir: str = "/dev") -> None:
    """Detach a device now, or, if it is still open (mounted), when its last user closes it.

    Since Linux 5.x ``LOOP_CLR_FD`` on a busy device only sets autoclear, so this never
    pulls a device out from under a mount. Detaching an unbound device is success.
    """
    try:
        fd = os.open(os.path.join(dev_dir, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
        logger.debug("detached loop device %s", name)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
    finally:
        os.close(fd)
