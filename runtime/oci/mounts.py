"""Translation of OCI mount options into mount(2) flags, propagation flags and fs data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime import linux

# option -> (clear, set)
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (0, linux.MS_RDONLY),
    "rw": (linux.MS_RDONLY, 0),
    "nosuid": (0, linux.MS_NOSUID),
    "suid": (linux.MS_NOSUID, 0),
    "nodev": (0, linux.MS_NODEV),
    "dev": (linux.MS_NODEV, 0),
    "noexec": (0, linux.MS_NOEXEC),
    "exec": (linux.MS_NOEXEC, 0),
    "sync": (0, linux.MS_SYNCHRONOUS),
    "async": (linux.MS_SYNCHRONOUS, 0),
    "dirsync": (0, linux.MS_DIRSYNC),
    "remount": (0, linux.MS_REMOUNT),
    "mand": (0, linux.MS_MANDLOCK),
    "nomand": (linux.MS_MANDLOCK, 0),
    "atime": (linux.MS_NOATIME, 0),
    "noatime": (0, linux.MS_NOATIME),
    "diratime": (linux.MS_NODIRATIME, 0),
    "nodiratime": (0, linux.MS_NODIRATIME),
    "relatime": (0, linux.MS_RELATIME),
    "norelatime": (linux.MS_RELATIME, 0),
    "strictatime": (0, linux.MS_STRICTATIME),
    "nostrictatime": (linux.MS_STRICTATIME, 0),
    "lazytime": (0, linux.MS_LAZYTIME),
    "nolazytime": (linux.MS_LAZYTIME, 0),
    "nosymfollow": (0, linux.MS_NOSYMFOLLOW),
    "symfollow": (linux.MS_NOSYMFOLLOW, 0),
    "bind": (0, linux.MS_BIND),
    "rbind": (0, linux.MS_BIND | linux.MS_REC),
}

PROPAGATION: dict[str, int] = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}

# Filesystems that must be mounted on a real directory of the rootfs: a symlink on the way
# to them is refused instead of followed (CVE-2019-16884).
NO_SYMLINK_TYPES = frozenset({"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"})


@dataclass(frozen=True)
class MountSpec:
    destination: str
    fstype: str
    source: str
    flags: int
    propagation: tuple[int, ...]
    data: str
    bind: bool

    @property
    def readonly(self) -> bool:
        return bool(self.flags & linux.MS_RDONLY)


def parse_mount(entry: dict[str, Any]) -> MountSpec:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for option in entry.get("options") or []:
        if option in _FLAGS:
            clear, set_ = _FLAGS[option]
            flags = (flags & ~clear) | set_
        elif option in PROPAGATION:
            propagation.append(PROPAGATION[option])
        else:
            data.append(option)
    fstype = entry.get("type") or ""
    bind = bool(flags & linux.MS_BIND) or fstype == "bind"
    if bind:
        flags |= linux.MS_BIND
    return MountSpec(
        destination=entry["destination"],
        fstype=fstype,
        source=entry.get("source") or fstype or "none",
        flags=flags,
        propagation=tuple(propagation),
        data=",".join(data),
        bind=bind,
    )


# Flags that a bind mount only takes on a second, remounting call.
BIND_REMOUNT_FLAGS = (
    linux.MS_RDONLY
    | linux.MS_NOSUID
    | linux.MS_NODEV
    | linux.MS_NOEXEC
    | linux.MS_NOATIME
    | linux.MS_NODIRATIME
    | linux.MS_RELATIME
    | linux.MS_STRICTATIME
    | linux.MS_NOSYMFOLLOW
)
