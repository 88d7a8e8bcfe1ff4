"""The ext4 image behind a sized volume: making it, checking it, mounting it on a loop
device and finding out what is mounted where.

The image is a sparse file, so a volume costs host space only for what is written into it, and
it is mounted with ``discard`` so that deleting files inside gives that space back. It has no
journal (a volume is scratch space; the journal would cost space and time on every create), so
an image that was mounted when the host went down is checked with ``e2fsck -p`` before it is
mounted again.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass

from runtime import linux
from runtime.volumes import loop

logger = logging.getLogger(__name__)

MKFS = "mkfs.ext4"
E2FSCK = "e2fsck"
MOUNT_FLAGS = linux.MS_NOSUID | linux.MS_NODEV
MOUNT_DATA = "discard"
UNBIND_TIMEOUT = 2.0
_TOOL_TIMEOUT = 120
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo, with the octal escapes of paths decoded."""

    mount_id: int
    parent_id: int
    device: str
    mount_point: str
    optional: tuple[str, ...]
    fstype: str
    source: str

    @property
    def shared(self) -> bool:
        return any(tag.startswith("shared:") for tag in self.optional)


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries: list[MountEntry] = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, source = [*post.split(), "", ""][:2]
        entries.append(
            MountEntry(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                device=fields[2],
                mount_point=_unescape(fields[4]),
                optional=tuple(fields[6:]),
                fstype=fstype,
                source=_unescape(source),
            )
        )
    return entries


def read_mountinfo(path: str = "/proc/self/mountinfo") -> list[MountEntry]:
    with open(path) as f:
        return parse_mountinfo(f.read())


def mounts_at(target: str, mountinfo: str = "/proc/self/mountinfo") -> list[MountEntry]:
    """The mounts stacked on ``target`` (a real path), bottom first."""
    return [m for m in read_mountinfo(mountinfo) if m.mount_point == target]


def _run(args: list[str], what: str, image: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise OSError(
            errno.ENOENT, f"{what}: {args[0]} is not installed (e2fsprogs)", image
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise OSError(errno.ETIMEDOUT, f"{what}: {args[0]} timed out", image) from exc


def make_image(image: str, size: int) -> None:
    """A sparse file of ``size`` bytes holding an empty ext4 owned by root."""
    fd = os.open(image, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    # 4 KiB blocks even for small images (mke2fs would pick 1 KiB) to match the loop device's
    # block size; -m 0: nobody else shares the volume, so no blocks are reserved for root.
    args = [MKFS, "-q", "-F", "-b", "4096", "-m", "0", "-O", "^has_journal"]
    args += ["-E", "root_owner=0:0,lazy_itable_init=1,nodiscard", image]
    result = _run(args, "mkfs", image)
    if result.returncode != 0:
        raise OSError(errno.EIO, f"mkfs.ext4 failed: {result.stderr.strip()}", image)


def check_image(image: str) -> None:
    """``e2fsck -p``: repairs what is safe to repair after an unclean shutdown."""
    result = _run([E2FSCK, "-p", image], "fsck", image)
    # 1: errors corrected; 2: corrected, reboot wanted (only for a mounted root file system)
    if result.returncode not in (0, 1, 2):
        detail = (result.stdout + result.stderr).strip()
        raise OSError(errno.EUCLEAN, f"e2fsck exit {result.returncode}: {detail}", image)
    if result.returncode:
        logger.warning("e2fsck repaired %s: %s", image, result.stdout.strip())


def mount_image(image: str, target: str) -> None:
    """Mount ``image`` on ``target`` (nosuid, nodev, private), reusing a loop device that is
    already bound to it (mounted in another namespace), else checking and attaching it."""
    existing = loop.bound_to(image)
    if existing:
        try:
            _mount_private(os.path.join("/dev", existing[0].name), target)
            return
        except OSError as exc:
            # A device whose last mount just went away stays bound until its last opener
            # (anything that opened it meanwhile, blkid say) closes it; mounting it in that
            # window fails with EIO. Wait for it to go, then attach afresh.
            logger.info("loop device %s of %s is going away (%s)", existing[0].name, image, exc)
            if not _wait_unbound(image):
                raise
    check_image(image)
    with loop.attached(image) as device:
        _mount_private(device, target)


def _wait_unbound(image: str, timeout: float = UNBIND_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while loop.bound_to(image):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _mount_private(device: str, target: str) -> None:
    linux.mount(device, target, "ext4", MOUNT_FLAGS, MOUNT_DATA)
    try:
        # Private so that neither this mount nor its unmount propagates to peers, and
        # bind mounts of it into containers receive nothing from the host.
        linux.mount(None, target, None, linux.MS_PRIVATE)
    except OSError:
        linux.umount(target, linux.MNT_DETACH)
        raise
    logger.info("mounted %s on %s", device, target)


def _below(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def unmount_below(root: str, *, lazy: bool, mountinfo: str = "/proc/self/mountinfo") -> None:
    """Unmount everything mounted on or under ``root`` (a real path), deepest first, so a
    directory tree can be deleted without reaching into a mounted file system. Unmounting
    nothing is success; not lazy, a busy mount raises OSError(EBUSY)."""
    flags = (linux.MNT_DETACH if lazy else 0) | linux.UMOUNT_NOFOLLOW
    targets = {m.mount_point for m in read_mountinfo(mountinfo) if _below(m.mount_point, root)}
    for target in sorted(targets, key=len, reverse=True):
        for _ in mounts_at(target, mountinfo):
            try:
                linux.umount(target, flags)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):  # already gone
                    raise
                break


def ensure_private_parent(path: str, mountinfo: str = "/proc/self/mountinfo") -> None:
    """Make sure mounts made below ``path`` do not propagate to peer namespaces.

    A mount made under a shared mount (systemd makes / shared) is copied to every peer at
    mount time, and a copy held in another namespace would keep the loop device busy after
    we unmount ours. Like Docker's ``MakePrivate`` of its storage home, ``path`` becomes a
    private bind mount of itself when the mount it lives on is shared.
    """
    entries = read_mountinfo(mountinfo)
    real = os.path.realpath(path)
    # The last of the longest matches is the mount on top, the one ``path`` resolves to.
    candidates = [m for m in entries if _below(real, m.mount_point)]
    if not candidates:
        return
    longest = max(len(m.mount_point) for m in candidates)
    containing = [m for m in candidates if len(m.mount_point) == longest][-1]
    if not containing.shared:
        return
    if containing.mount_point != real:
        linux.mount(real, real, None, linux.MS_BIND)
    linux.mount(None, real, None, linux.MS_PRIVATE)
    logger.info("made %s a private mount so volume mounts do not propagate", real)
