"""Entries of a layer directory under construction, created fd-relative and never through a
symlink.

A layer's archive controls every name and link in it, so no path string is ever walked on
the host: each parent directory is opened with ``openat2(RESOLVE_BENEATH|NO_SYMLINKS)`` from
the layer's root fd (a symlinked or non-directory parent is refused, not followed), and each
entry is created with ``*at`` calls on that parent's fd. Whiteouts become what overlayfs
reads: a 0/0 character device, and ``trusted.overlay.opaque=y`` on an opaque directory.
Directory modes and mtimes are set last, deepest first, once nothing more is created in them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from runtime import linux
from runtime.image.stream import Rejected

logger = logging.getLogger(__name__)

OPAQUE_XATTR = "trusted.overlay.opaque"
_BENEATH = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
_DIR_PATH = os.O_PATH | os.O_DIRECTORY
_DIR_READ = os.O_RDONLY | os.O_DIRECTORY
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Filesystems without xattrs (or user xattrs on special files): skipped, like Docker does.
_XATTR_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)

Parts = tuple[str, ...]
_T = TypeVar("_T")


@dataclass(frozen=True)
class Meta:
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime_ns: int | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)


def show(parts: Parts) -> str:
    return "/".join(parts) or "."


class LayerDir:
    """The layer directory at ``path`` while its entries are created."""

    def __init__(self, path: str) -> None:
        self.root_fd = os.open(path, _DIR_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._cached: tuple[Parts, int] | None = None
        self._dirs: dict[Parts, Meta] = {}
        self._as_root = os.geteuid() == 0

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)

    def add_file(self, parts: Parts, meta: Meta, write: Callable[[int], None]) -> None:
        parent, name = self._slot(parts)
        fd = self._create(parent, parts, lambda: os.open(name, _NEW_FILE, 0o600, dir_fd=parent))
        try:
            write(fd)
            self._chown(fd, meta)
            os.chmod(fd, meta.mode)  # after chown, which clears setuid and setgid
            self._set_xattrs(fd, meta)
            if meta.mtime_ns is not None:
                os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
        finally:
            os.close(fd)

    def add_dir(self, parts: Parts, meta: Meta) -> None:
        replaced = None
        if parts:
            replaced = self._make_dir(self._parent(parts[:-1]), parts)
        fd = _openat2(self.root_fd, show(parts), _DIR_READ, parts)
        try:
            self._chown(fd, meta)
            self._set_xattrs(fd, meta)
            if replaced is not None and stat.S_ISCHR(replaced.st_mode) and not replaced.st_rdev:
                # A directory recreated where this layer deleted one: lower contents stay hidden.
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self._dirs[parts] = meta

    def add_symlink(self, parts: Parts, target: str, meta: Meta) -> None:
        parent, name = self._slot(parts)
        self._create(parent, parts, lambda: os.symlink(target, name, dir_fd=parent))
        if self._as_root:
            os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        if meta.mtime_ns is not None:
            times = (meta.mtime_ns, meta.mtime_ns)
            os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)

    def add_hardlink(self, parts: Parts, target: Parts) -> None:
        if not target or target == parts:
            raise Rejected(f"hardlink {show(parts)!r} points to {show(target)!r}")
        parent, name = self._slot(parts)
        source_dir = self._open_existing_dir(target[:-1], f"hardlink target {show(target)!r}")

        def link() -> None:
            os.link(
                target[-1], name, src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False
            )

        try:
            self._create(parent, parts, link)
        except (FileNotFoundError, PermissionError) as exc:
            raise Rejected(
                f"hardlink {show(parts)!r}: target {show(target)!r} is missing or a directory"
            ) from exc
        finally:
            os.close(source_dir)

    def add_fifo(self, parts: Parts, meta: Meta) -> None:
        parent, name = self._slot(parts)
        self._create(parent, parts, lambda: os.mkfifo(name, 0o600, dir_fd=parent))
        if self._as_root:
            os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        os.chmod(name, meta.mode, dir_fd=parent)  # we just made it: a fifo, not a link
        if meta.mtime_ns is not None:
            times = (meta.mtime_ns, meta.mtime_ns)
            os.utime(name, ns=times, dir_fd=parent, follow_symlinks=False)

    def add_whiteout(self, parts: Parts, meta: Meta) -> None:
        """Mark ``parts`` deleted: overlayfs hides lower entries behind a 0/0 char device."""
        parent, name = self._slot(parts)
        try:
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
        except FileExistsError as exc:
            raise Rejected(f"whiteout of {show(parts)!r} conflicts with an entry") from exc
        if self._as_root:
            os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)

    def set_opaque(self, parts: Parts) -> None:
        """Hide everything lower layers have under directory ``parts``."""
        self._parent(parts)  # creates it if missing, refuses a symlink
        fd = _openat2(self.root_fd, show(parts), _DIR_READ, parts)
        try:
            os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory modes and mtimes, deepest first (creating entries changed them)."""
        self._drop_cache()
        self._dirs.setdefault((), Meta())
        for parts in sorted(self._dirs, reverse=True):
            meta = self._dirs[parts]
            fd = _openat2(self.root_fd, show(parts), _DIR_READ, parts)
            try:
                os.chmod(fd, meta.mode)
                if meta.mtime_ns is not None:
                    os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))
            finally:
                os.close(fd)

    def _slot(self, parts: Parts) -> tuple[int, str]:
        if not parts:
            raise Rejected("the layer root can only be a directory")
        return self._parent(parts[:-1]), parts[-1]

    def _parent(self, parts: Parts) -> int:
        """An O_PATH fd of directory ``parts`` (borrowed: cached until the next call),
        created with mode 0755 if missing, as Docker does for implied parents."""
        if self._cached is not None and self._cached[0] == parts:
            return self._cached[1]
        try:
            fd = _openat2(self.root_fd, show(parts), _DIR_PATH, parts)
        except FileNotFoundError:
            fd = self._make_dirs(parts)
        self._drop_cache()
        self._cached = (parts, fd)
        return fd

    def _make_dirs(self, parts: Parts) -> int:
        fd = os.dup(self.root_fd)
        try:
            for i, name in enumerate(parts):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                child = _openat2(fd, name, _DIR_PATH, parts[: i + 1])
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_existing_dir(self, parts: Parts, what: str) -> int:
        try:
            return _openat2(self.root_fd, show(parts), _DIR_PATH, parts)
        except FileNotFoundError as exc:
            raise Rejected(f"{what} is not in the layer") from exc

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _create(self, parent: int, parts: Parts, make: Callable[[], _T]) -> _T:
        """Run ``make``; an existing non-directory is replaced first (as Docker does), an
        existing directory is refused."""
        try:
            return make()
        except FileExistsError:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise Rejected(f"{show(parts)!r} would replace a directory")
        os.unlink(parts[-1], dir_fd=parent)
        return make()

    def _make_dir(self, parent: int, parts: Parts) -> os.stat_result | None:
        """Create directory ``parts`` (or keep an existing one); the replaced entry's stat."""
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            return None
        except FileExistsError:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return None
        os.unlink(parts[-1], dir_fd=parent)
        os.mkdir(parts[-1], 0o700, dir_fd=parent)
        return st

    def _chown(self, fd: int, meta: Meta) -> None:
        if self._as_root:
            os.chown(fd, meta.uid, meta.gid)

    def _set_xattrs(self, fd: int, meta: Meta) -> None:
        for key, value in meta.xattrs.items():
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                if exc.errno not in _XATTR_UNSUPPORTED:
                    raise
                logger.debug("xattr %s not set: %s", key, exc.strerror)


def _openat2(dir_fd: int, path: str, flags: int, parts: Parts) -> int:
    try:
        return linux.openat2(dir_fd, path, flags, resolve=_BENEATH)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Rejected(f"{show(parts)!r} goes through a symlink") from exc
        if exc.errno == errno.ENOTDIR:
            raise Rejected(f"{show(parts)!r} is not a directory") from exc
        if exc.errno == errno.EXDEV:
            raise Rejected(f"{show(parts)!r} leaves the layer") from exc
        raise


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it; already gone is fine."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        _make_writable(path)  # directories a layer made read-only, when not root
        shutil.rmtree(path, ignore_errors=True)


def _make_writable(path: str) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if stat.S_ISDIR(os.lstat(child).st_mode):
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700)
