"""Paths inside a container root: resolving and creating mount targets without escaping it.

An image controls every symlink in its rootfs, and a process in a sibling container sharing a
volume can swap a directory for a symlink while we work (CVE-2021-30465), or plant ``/proc`` as a
symlink (CVE-2019-16884). So nothing here walks a host path string: every lookup is an
``openat2(RESOLVE_IN_ROOT)`` from the root's fd (the kernel clamps absolute symlinks and ``..``
at the root), and every creation is ``mkdirat``/``openat`` on the fd of a parent that was already
resolved that way. The caller mounts onto ``fd_path(fd)`` so the kernel uses exactly the dentry we
resolved. This is the shape of runc's ``MkdirAllInRoot`` and filepath-securejoin / libpathrs.

The common case (target already exists) costs one ``openat2``; the component-wise walk runs only
when something is missing. ``resolve_in_root`` is the pure, path-string counterpart
(filepath-securejoin's ``SecureJoin``) for places that need a host path rather than an fd.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat

from runtime import linux

logger = logging.getLogger(__name__)

# filepath-securejoin's limit; the kernel itself gives up after 40 links per lookup.
_MAX_LINKS = 255
# openat2 returns EAGAIN when a concurrent rename or mount may have let ".." escape.
_EAGAIN_RETRIES = 32
_IN_ROOT = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
_BENEATH = linux.RESOLVE_BENEATH | linux.RESOLVE_NO_SYMLINKS | linux.RESOLVE_NO_MAGICLINKS
_DIR = os.O_PATH | os.O_DIRECTORY


def fd_path(fd: int) -> str:
    """The magic link naming ``fd``; mounting onto it mounts onto exactly that dentry."""
    return f"/proc/self/fd/{fd}"


def open_in_root(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``; kernel errors (ENOENT, ELOOP...) propagate."""
    _check_nul(path)
    return _openat2(root_fd, path or ".", flags, _IN_ROOT)


def ensure_mount_target(root_fd: int, path: str, *, is_dir: bool) -> int:
    """An O_PATH fd of the mount target ``path`` inside the root, created if missing."""
    if is_dir:
        return mkdir_all_in_root(root_fd, path)
    return create_file_in_root(root_fd, path)


def mkdir_all_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """Create every missing directory of ``path`` inside the root; an O_PATH fd of the last.

    Dangling symlinks on the way are followed within the root and their targets created there.
    """
    return _mkdir_all(root_fd, _components(path), mode, path)


def create_file_in_root(root_fd: int, path: str, mode: int = 0o644) -> int:
    """An O_PATH fd of the non-directory ``path`` inside the root, created empty if missing.

    Missing parents are created; if the last component is a symlink, its target (resolved in
    the root) is used instead, and created if missing when its parent exists.
    """
    parts = _components(path)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, "file mount target is the root directory", path)
    fd = _open_existing_file(root_fd, parts, path)
    if fd is not None:
        return fd
    parent_fd = _mkdir_all(root_fd, parts[:-1], 0o755, path)
    for _ in range(_MAX_LINKS):
        try:
            fd, target = _create_file_at(parent_fd, parts[-1], mode, path)
        finally:
            os.close(parent_fd)
        if fd is not None:
            return fd
        # The last component is a symlink: use its target, resolved within the root.
        parts = ([] if target.startswith("/") else parts[:-1]) + _components(target)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "file mount target is a directory", path)
        fd = _open_existing_file(root_fd, parts, path)
        if fd is not None:
            return fd
        parent_fd = _open_dir(root_fd, parts[:-1], path)
    os.close(parent_fd)
    raise OSError(errno.ELOOP, "too many symlinks creating file in root", path)


def resolve_in_root(root: str, path: str) -> str:
    """The host path of ``path`` inside directory ``root``, every symlink resolved within it.

    Like filepath-securejoin's ``SecureJoin``: absolute symlinks and ``..`` are clamped at
    ``root`` and missing trailing components are appended lexically. The answer is only as
    good as the moment it was computed; prefer the fd-returning functions when mounting.
    """
    _check_nul(path)
    base = root.rstrip("/")
    pending = _components(path)[::-1]
    resolved: list[str] = []
    links = 0
    while pending:
        name = pending.pop()
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        try:
            target = os.readlink(f"{base}/{_join([*resolved, name])}")
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                raise
            resolved.append(name)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, f"too many symlinks resolving in {root}", path)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(_components(target)))
    return f"{base}/{'/'.join(resolved)}" if resolved else (base or "/")


def verify_inside(root: str, fd: int) -> None:
    """Raise ``OSError(EXDEV)`` unless ``fd`` is ``root`` or lies under it (defence in depth)."""
    actual = os.readlink(fd_path(fd))
    real_root = os.path.realpath(root)
    if actual == real_root or actual.startswith(real_root.rstrip("/") + "/"):
        return
    raise OSError(errno.EXDEV, f"fd {fd} resolves to {actual}, outside root {real_root}")


def _components(path: str) -> list[str]:
    _check_nul(path)
    return [part for part in path.split("/") if part not in ("", ".")]


def _join(parts: list[str]) -> str:
    return "/".join(parts) or "."


def _check_nul(path: str) -> None:
    # ctypes would silently cut the path at the NUL: "etc\0/../x" must not become "etc".
    if "\0" in path:
        raise ValueError(f"embedded null byte in path {path!r}")


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    for _ in range(_EAGAIN_RETRIES):
        try:
            return linux.openat2(dir_fd, path, flags, resolve=resolve)
        except BlockingIOError:
            continue
    return linux.openat2(dir_fd, path, flags, resolve=resolve)


def _open_dir(root_fd: int, parts: list[str], path: str) -> int:
    try:
        return _openat2(root_fd, _join(parts), _DIR, _IN_ROOT)
    except NotADirectoryError as exc:
        raise _not_a_directory(path) from exc


def _not_a_directory(path: str) -> NotADirectoryError:
    return NotADirectoryError(errno.ENOTDIR, "not a directory inside the container root", path)


def _mkdir_all(root_fd: int, parts: list[str], mode: int, path: str) -> int:
    """Each round resolves from the root in the kernel, then creates what is missing; a new
    round starts after a symlink is spliced in, at ``..``, or when a race removed something."""
    for _ in range(_MAX_LINKS + len(parts) + 1):
        try:
            return _open_dir(root_fd, parts, path)
        except FileNotFoundError:
            pass
        done, parent_fd = _deepest_dir(root_fd, parts, path)
        logger.debug("creating %s under %s inside the container root", parts[done:], parts[:done])
        parts, fd = _make_dirs(parent_fd, parts, done, mode, path)
        if fd is not None:
            return fd
    raise OSError(errno.ELOOP, "too many symlinks or retries creating directory in root", path)


def _deepest_dir(root_fd: int, parts: list[str], path: str) -> tuple[int, int]:
    """The longest prefix of ``parts`` that resolves to a directory: (length, O_PATH fd).

    Searched from the end, since usually only the last component or two are missing.
    """
    for done in range(len(parts) - 1, 0, -1):
        try:
            return done, _open_dir(root_fd, parts[:done], path)
        except FileNotFoundError:
            continue
    return 0, _open_dir(root_fd, [], path)


def _make_dirs(
    dir_fd: int, parts: list[str], done: int, mode: int, path: str
) -> tuple[list[str], int | None]:
    """Create ``parts[done:]`` under ``dir_fd`` (closed here), one fd-relative step at a time.

    Returns ``(parts, fd)`` when done, or ``(new_parts, None)`` when the caller must resolve
    again from the root: after ``..`` (only the kernel's IN_ROOT lookup may go up) or at a
    symlink, whose target is spliced into the path.
    """
    try:
        for i in range(done, len(parts)):
            name = parts[i]
            if name == "..":
                return parts, None
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=dir_fd)
            try:
                child = _openat2(dir_fd, name, _DIR, _BENEATH)
            except NotADirectoryError as exc:
                raise _not_a_directory(path) from exc
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return _splice_link(dir_fd, parts, i), None
                if exc.errno == errno.ENOENT:  # removed under us: look it up again
                    return parts, None
                raise
            os.close(dir_fd)
            dir_fd = child
        result, dir_fd = dir_fd, -1
        return parts, result
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)


def _splice_link(dir_fd: int, parts: list[str], i: int) -> list[str]:
    """``parts`` with the symlink ``parts[i]`` (an entry of ``dir_fd``) replaced by its target."""
    try:
        target = os.readlink(parts[i], dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):  # swapped back under us: look up again
            return parts
        raise
    base = [] if target.startswith("/") else parts[:i]
    return base + _components(target) + parts[i + 1 :]


def _open_existing_file(root_fd: int, parts: list[str], path: str) -> int | None:
    """An O_PATH fd of an existing non-directory at ``parts``, or None if it is missing."""
    try:
        fd = _openat2(root_fd, _join(parts), os.O_PATH, _IN_ROOT)
    except FileNotFoundError:
        return None
    except NotADirectoryError as exc:
        raise _not_a_directory(path) from exc
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(errno.EISDIR, "file mount target is a directory", path)
    return fd


def _create_file_at(parent_fd: int, name: str, mode: int, path: str) -> tuple[int | None, str]:
    """Create ``name`` in ``parent_fd`` if missing and open it.

    Returns ``(fd, "")``, or ``(None, target)`` when ``name`` is a symlink to ``target``.
    """
    if name == "..":
        raise IsADirectoryError(errno.EISDIR, "file mount target is a directory", path)
    for _ in range(_EAGAIN_RETRIES):
        # O_EXCL never follows a symlink and never truncates or opens an existing file.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=parent_fd))
        try:
            fd = _openat2(parent_fd, name, os.O_PATH, _BENEATH)
        except FileNotFoundError:  # removed between create and open: try again
            continue
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            try:
                return None, os.readlink(name, dir_fd=parent_fd)
            except OSError as link_exc:
                if link_exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise
                continue
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise IsADirectoryError(errno.EISDIR, "file mount target is a directory", path)
        return fd, ""
    raise OSError(errno.EAGAIN, "file mount target keeps changing", path)
