"""File locks, atomic file replacement and ``OSError`` translation for the image store,
which the daemon and the CLI may write at the same time.

``flock`` locks belong to an open file description, so they are released when the process
dies: a crashed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from runtime.errors import ImageStoreError

logger = logging.getLogger(__name__)

TMP_MARK = ".tmp-"
_F = TypeVar("_F", bound=Callable[..., Any])


def storage_errors(method: _F) -> _F:
    """Report an ``OSError`` of an image store method as ``ImageStoreError``."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            path = str(exc.filename or self.images_dir)
            raise ImageStoreError(path, exc.strerror or str(exc)) from exc

    return cast(_F, wrapper)


@contextlib.contextmanager
def flocked(path: str, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold a lock on ``path`` (created if missing); yields False if ``blocking`` is off and
    the lock is taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a
    torn one, even after a crash (the temporary file is fsynced before the rename)."""
    tmp = f"{path}{TMP_MARK}{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path))


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
