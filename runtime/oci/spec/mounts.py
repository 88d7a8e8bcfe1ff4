"""The ``mounts`` section: which filesystems appear where, with which mount(2) options."""

from __future__ import annotations

from typing import Any

from runtime.oci.spec.checks import absolute_path, fail, list_of, obj, strings, text, unsupported

# Options that become mount(2) flags or propagation changes rather than filesystem data.
FLAG_OPTIONS = frozenset(
    {
        "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
        "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
        "runbindable", "sync", "async", "remount", "mand", "nomand", "atime", "noatime",
        "relatime", "norelatime", "strictatime", "nostrictatime", "nodiratime", "diratime",
        "lazytime", "nolazytime", "nosymfollow", "symfollow", "dirsync",
    }
)  # fmt: skip

# Extensions other runtimes accept that playground does not implement.
UNSUPPORTED_OPTIONS = {
    "tmpcopyup": "copying the image's files up into a tmpfs is not supported by playground",
    "copy-symlink": "copying a symlink instead of mounting is not supported by playground",
    "idmap": "idmapped mounts are not supported by playground",
    "ridmap": "idmapped mounts are not supported by playground",
}
_RECURSIVE_ATTRS = frozenset(
    {
        "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime",
        "ratime", "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime", "rnodiratime",
        "rdiratime", "rnosymfollow", "rsymfollow",
    }
)  # fmt: skip

# Filesystem data options without a value ("newinstance"); "key=value" ones go through as-is.
_CGROUP_V1_CONTROLLERS = frozenset(
    {
        "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
        "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc", "none", "noprefix", "xattr",
    }
)  # fmt: skip
DATA_FLAGS: dict[str, frozenset[str]] = {
    "devpts": frozenset({"newinstance"}),
    "tmpfs": frozenset({"noswap"}),
    "overlay": frozenset({"userxattr", "volatile"}),
    "cgroup": _CGROUP_V1_CONTROLLERS,
    "cgroup2": frozenset({"nsdelegate", "memory_recursiveprot", "memory_localevents"}),
}

_MOUNT_FIELDS = obj(
    {
        "destination": absolute_path,
        "type": text,
        "source": text,
        "options": strings,
        "uidMappings": unsupported("idmapped mounts are not supported by playground"),
        "gidMappings": unsupported("idmapped mounts are not supported by playground"),
    },
    required=("destination",),
)


def is_bind(mount: dict[str, Any]) -> bool:
    """Type "bind" (crun), or any type with a bind/rbind option (runc's "none")."""
    options = mount.get("options") or ()
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def _option(option: str, fstype: str, path: str) -> None:
    if option in FLAG_OPTIONS or "=" in option[1:]:
        return
    if option in DATA_FLAGS.get(fstype, ()):
        return
    if option in UNSUPPORTED_OPTIONS:
        fail(path, UNSUPPORTED_OPTIONS[option])
    if option in _RECURSIVE_ATTRS:
        fail(path, f"recursive mount attribute {option!r} is not supported by playground")
    fail(path, f"unknown mount option {option!r}")


def _mount(value: Any, path: str) -> None:
    _MOUNT_FIELDS(value, path)
    fstype = value.get("type") or ""
    for index, option in enumerate(value.get("options") or ()):
        _option(option, fstype, f"{path}.options[{index}]")
    if is_bind(value):
        if not value.get("source"):
            fail(f"{path}.source", "a bind mount needs a source")
    elif not fstype:
        fail(f"{path}.type", "is required for a mount that is not a bind mount")
    elif fstype == "none":
        fail(f"{path}.type", "type 'none' needs a bind or rbind option")


MOUNTS = list_of(_mount)
