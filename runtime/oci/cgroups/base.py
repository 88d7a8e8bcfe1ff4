"""The cgroup manager interface and what every backend shares.

Owns the ``CgroupManager`` Protocol, the ``CgroupStats`` snapshot, the low-level file
operations on cgroupfs (``CgroupFs``, injectable so unit tests can simulate the kernel in a
``tmp_path`` tree), the ``CgroupDir`` helper that turns ``OSError`` into ``CgroupError`` naming
the OCI field, and the parsing helpers for OCI values and kernel files.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.errors import CgroupError

logger = logging.getLogger(__name__)

# Relative OCI cgroupsPath values are placed under this parent in every hierarchy.
DEFAULT_PARENT = "/playground"


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """One reading of a cgroup's counters. Counters a host lacks read as 0."""

    cpu_usage_ns: int
    memory_usage: int
    memory_limit: int | None
    memory_max_usage: int
    pids_current: int
    pids_limit: int | None
    oom_kill_count: int


class CgroupManager(Protocol):
    """One container's cgroup, in every hierarchy the host has mounted."""

    @property
    def path(self) -> str:
        """The normalized cgroups path, e.g. ``/playground/abc123``."""
        ...

    def create(self) -> None: ...

    def apply(self, resources: Mapping[str, Any]) -> None: ...

    def add_pid(self, pid: int) -> None: ...

    def pids(self) -> list[int]: ...

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def kill_all(self, sig: int = signal.SIGKILL) -> None: ...

    def destroy(self) -> None: ...

    def stats(self) -> CgroupStats: ...

    def oom_killed(self) -> int: ...


class CgroupFs:
    """File operations on cgroupfs. Control files are never created: a missing file means the
    controller is not enabled, and every write is a single write(2), as the kernel expects."""

    def mkdir(self, path: str) -> bool:
        """Create ``path``; False if it already existed."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return False
        return True

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def read(self, path: str) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def subdirs(self, path: str) -> list[str]:
        with os.scandir(path) as entries:
            return [e.path for e in entries if e.is_dir(follow_symlinks=False)]

    def attach_device_filter(self, path: str, program: bytes) -> None:
        """Attach a BPF_PROG_TYPE_CGROUP_DEVICE program to the cgroup2 directory ``path``."""
        from runtime.oci.cgroups import devices_bpf

        devices_bpf.attach(path, program)


@dataclass(frozen=True, slots=True)
class Write:
    """One control-file write planned by ``apply``; ``field`` is the OCI field it comes from.

    ``swap_with_next``: this write and the next must keep a kernel invariant between them
    (v1 memory.limit_in_bytes <= memory.memsw.limit_in_bytes); if this one fails with EINVAL
    the two are done in the opposite order.
    """

    file: str
    value: str
    field: str
    swap_with_next: bool = False


def describe(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such control file (is the controller enabled?)"
    return exc.strerror or str(exc)


@dataclass(frozen=True, slots=True)
class CgroupDir:
    """One directory of the cgroup in one hierarchy; errors name ``cgroup`` (the OCI path)."""

    fs: CgroupFs
    cgroup: str
    path: str

    def file(self, name: str) -> str:
        return f"{self.path}/{name}"

    def write(self, name: str, value: str, field: str) -> None:
        try:
            self.fs.write(self.file(name), value)
        except OSError as exc:
            raise self._error(name, value, field, exc) from exc

    def _error(self, name: str, value: str, field: str, exc: OSError) -> CgroupError:
        return CgroupError(
            self.cgroup, f"{field}: cannot write {value!r} to {name}: {describe(exc)}"
        )

    def read(self, name: str, field: str) -> str:
        try:
            return self.fs.read(self.file(name))
        except OSError as exc:
            raise CgroupError(self.cgroup, f"{field}: cannot read {name}: {describe(exc)}") from exc

    def read_optional(self, name: str) -> str | None:
        """The file's content, or None when it (or the whole directory) does not exist."""
        try:
            return self.fs.read(self.file(name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CgroupError(self.cgroup, f"cannot read {name}: {describe(exc)}") from exc

    def has(self, name: str) -> bool:
        return self.fs.exists(self.file(name))

    def write_all(self, writes: list[Write]) -> None:
        pending = iter(writes)
        for w in pending:
            second = next(pending, None) if w.swap_with_next else None
            if second is None:
                self.write(w.file, w.value, w.field)
            else:
                self._write_pair(w, second)

    def _write_pair(self, first: Write, second: Write) -> None:
        """Write both; if the kernel refuses the first with EINVAL, the second goes first."""
        try:
            self.fs.write(self.file(first.file), first.value)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise self._error(first.file, first.value, first.field, exc) from exc
            self.write(second.file, second.value, second.field)
            self.write(first.file, first.value, first.field)
        else:
            self.write(second.file, second.value, second.field)


def normalize_path(cgroups_path: str) -> str:
    """``linux.cgroupsPath`` -> an absolute path below each hierarchy's root.

    Relative paths go under ``DEFAULT_PARENT``. The root itself, ``.`` and ``..`` are refused:
    destroy() removes the directory and kills what is inside.
    """
    if not cgroups_path or "\0" in cgroups_path:
        raise CgroupError(cgroups_path, "invalid cgroups path")
    full = cgroups_path if cgroups_path.startswith("/") else f"{DEFAULT_PARENT}/{cgroups_path}"
    parts = [p for p in full.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise CgroupError(cgroups_path, "invalid cgroups path")
    return "/" + "/".join(parts)


def opt_int(section: Mapping[str, Any], key: str, field: str, cgroup: str) -> int | None:
    """``section[key]`` as an int, None when absent or null; bools and other types are errors."""
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CgroupError(cgroup, f"{field}: expected an integer, got {value!r}")
    return int(value)


def check_keys(section: Mapping[str, Any], known: frozenset[str], prefix: str, cgroup: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise CgroupError(cgroup, f"{prefix}.{unknown[0]}: not supported")


def as_mapping(value: Any, field: str, cgroup: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CgroupError(cgroup, f"{field}: expected an object")
    return value


def as_list(value: Any, field: str, cgroup: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CgroupError(cgroup, f"{field}: expected a list")
    return value


def parse_keyed(text: str | None) -> dict[str, int]:
    """Parse a flat keyed file (``key value`` per line), skipping values that are not ints."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def parse_int(text: str | None) -> int:
    """A single-value file as an int; 0 when missing or not a number."""
    try:
        return int((text or "").strip() or 0)
    except ValueError:
        return 0


def parse_pids(text: str | None) -> list[int]:
    return [int(line) for line in (text or "").split()]
