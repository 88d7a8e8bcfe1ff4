"""Running the runtime from a sealed, in-memory copy of its own interpreter (CVE-2019-5736).

A container process that reaches ``/proc/<pid>/exe`` of a runtime process (for example by making
its entrypoint a link to ``/proc/self/exe``) must not be able to rewrite the host's interpreter.
Every process that forks container inits first re-executes itself from a sealed memfd, so that
``/proc/self/exe`` names an anonymous file that nobody can write.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys

logger = logging.getLogger(__name__)

MEMFD_NAME = "playground-runtime"
_ENV = "_PLAYGROUND_SEALED_EXE"
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def is_sealed() -> bool:
    """Whether this process runs from the sealed copy."""
    try:
        return os.readlink("/proc/self/exe").startswith(f"/memfd:{MEMFD_NAME}")
    except OSError:
        return False


def sealed_copy(path: str) -> int:
    """Copy ``path`` into a memfd and seal it against every change; returns the fd (inheritable)."""
    fd = os.memfd_create(MEMFD_NAME, os.MFD_ALLOW_SEALING)
    with open(path, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        while copied < size:
            copied += os.sendfile(fd, src.fileno(), copied, size - copied)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    os.fchmod(fd, 0o555)
    return fd


def reexec_sealed(argv: list[str] | None = None) -> None:
    """Replace this process with the same command run from a sealed interpreter copy.

    Returns at once when already sealed (and closes the inherited memfd).
    """
    inherited = os.environ.pop(_ENV, None)
    if inherited is not None:
        with contextlib.suppress(OSError, ValueError):
            os.close(int(inherited))
    if is_sealed():
        return
    fd = sealed_copy(os.path.realpath(sys.executable))
    os.environ[_ENV] = str(fd)
    args = argv if argv is not None else [sys.executable, *sys.orig_argv[1:]]
    logger.debug("re-executing from a sealed interpreter copy")
    os.execv(f"/proc/self/fd/{fd}", args)
