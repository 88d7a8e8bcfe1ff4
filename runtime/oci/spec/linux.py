"""The ``linux`` section: namespaces, id mappings, device nodes, sysctls and the paths the
container may not see or change, plus the rules that tie it to the rest of the config
(a hostname needs a UTS namespace, a new user namespace needs mappings, ...).
"""

from __future__ import annotations

import os
import re
from typing import Any

from runtime.oci.spec.checks import (
    ID_MAX,
    INT64_MAX,
    UINT32_MAX,
    absolute_path,
    child,
    fail,
    integer,
    list_of,
    obj,
    one_of,
    string,
    string_map,
    text,
    unsupported,
)
from runtime.oci.spec.resources import RESOURCES
from runtime.oci.spec.seccomp import SECCOMP

NAMESPACES = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup"})
PROPAGATIONS = frozenset(
    {"private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"}
)
_NAMESPACE_TYPE = one_of(NAMESPACES, "namespace type")


def _namespace_type(value: Any, path: str) -> None:
    if value == "time":
        fail(path, "time namespaces are not supported by playground")
    _NAMESPACE_TYPE(value, path)


_NAMESPACE_LIST = list_of(obj({"type": _namespace_type, "path": absolute_path}, required=("type",)))


def _namespaces(value: Any, path: str) -> None:
    _NAMESPACE_LIST(value, path)
    seen: set[str] = set()
    for index, namespace in enumerate(value):
        if namespace["type"] in seen:
            fail(f"{path}[{index}].type", f"duplicate {namespace['type']} namespace")
        seen.add(namespace["type"])


_ID_MAPPINGS = list_of(
    obj(
        {
            "containerID": integer(0, ID_MAX),
            "hostID": integer(0, ID_MAX),
            "size": integer(1, UINT32_MAX),
        },
        required=("containerID", "hostID", "size"),
    )
)

_DEVICE_FIELDS = obj(
    {
        "path": absolute_path,
        "type": one_of(("c", "b", "u", "p"), "device type"),
        "major": integer(0, INT64_MAX),
        "minor": integer(0, INT64_MAX),
        "fileMode": integer(0, 0o7777),
        "uid": integer(0, ID_MAX),
        "gid": integer(0, ID_MAX),
    },
    required=("path", "type"),
)


def _device(value: Any, path: str) -> None:
    _DEVICE_FIELDS(value, path)
    if value["type"] != "p":
        for number in ("major", "minor"):
            if value.get(number) is None:
                fail(f"{path}.{number}", f"is required for a device of type {value['type']!r}")


def _cgroups_path(value: Any, path: str) -> None:
    """The path is joined under the cgroup root, so ".." would let a config climb out of it."""
    text(value, path)
    if ".." in value.split("/"):
        fail(path, f"must not contain '..', got {value!r}")


LINUX = obj(
    {
        "namespaces": _namespaces,
        "uidMappings": _ID_MAPPINGS,
        "gidMappings": _ID_MAPPINGS,
        "devices": list_of(_device),
        "cgroupsPath": _cgroups_path,
        "resources": RESOURCES,
        "rootfsPropagation": one_of(PROPAGATIONS, "propagation"),
        "maskedPaths": list_of(absolute_path),
        "readonlyPaths": list_of(absolute_path),
        "sysctl": string_map,
        "seccomp": SECCOMP,
        "mountLabel": string,
        "intelRdt": unsupported(),
        "personality": unsupported(),
        "timeOffsets": unsupported(),
        "memoryPolicy": unsupported(),
        "netDevices": unsupported(),
    }
)


def namespace_paths(linux: dict[str, Any]) -> dict[str, str]:
    """Namespace type -> path to join, "" for a new one. Absent types are shared with the host."""
    return {ns["type"]: ns.get("path") or "" for ns in linux.get("namespaces") or ()}


def check_namespace_rules(config: dict[str, Any], namespaces: dict[str, str]) -> None:
    if "mount" not in namespaces:
        # Setting up the rootfs (pivot_root, masking /proc) in the host's mount table would
        # change the host; runc allows it, playground does not.
        fail("linux.namespaces", "a mount namespace is required")
    for field in ("hostname", "domainname"):
        if config.get(field) and "uts" not in namespaces:
            fail(field, f"cannot set the {field} without a uts namespace")
    _check_id_mappings(config.get("linux") or {}, namespaces)


def _check_id_mappings(linux: dict[str, Any], namespaces: dict[str, str]) -> None:
    new_userns = namespaces.get("user") == ""
    for field in ("uidMappings", "gidMappings"):
        mapped = bool(linux.get(field))
        if new_userns and not mapped:
            fail(f"linux.{field}", "is required for a new user namespace")
        if mapped and "user" not in namespaces:
            fail(f"linux.{field}", "needs a user namespace")
        if mapped and not new_userns:
            fail(f"linux.{field}", "cannot be set when joining an existing user namespace")


# kernel.* sysctls that belong to the IPC namespace (ipc/ipc_sysctl.c).
_IPC_PREFIXES = ("kernel.msg", "kernel.shm", "fs.mqueue.")
# Dotted components; a "/" inside one is a literal dot ("eth0/100" is the interface eth0.100).
# No component can be empty or all dots, so a name never turns into "..".
_PART = r"[\w-]+(?:/[\w-]+)*"
_SYSCTL_NAME = re.compile(rf"{_PART}(?:\.{_PART})+", re.ASCII)


def check_sysctls(linux: dict[str, Any], namespaces: dict[str, str], proc: str = "/proc") -> None:
    """Only sysctls of namespaces the container does not share with the host (runc's rule)."""
    for raw in linux.get("sysctl") or ():
        name = _dotted(raw)
        path = child("linux.sysctl", raw)
        if not _SYSCTL_NAME.fullmatch(name):
            fail(path, f"{raw!r} is not a sysctl name")
        if name.startswith(_IPC_PREFIXES) or name == "kernel.sem":
            if "ipc" not in namespaces:
                fail(path, f"sysctl {name!r} is not allowed in the host's ipc namespace")
        elif name.startswith("net."):
            if _is_host_network(namespaces, proc):
                fail(path, f"sysctl {name!r} is not allowed in the host's network namespace")
        elif name == "kernel.hostname" and "uts" in namespaces:
            fail(path, "sysctl 'kernel.hostname' conflicts with the hostname field; use that")
        elif not (name == "kernel.domainname" and "uts" in namespaces):
            fail(path, f"sysctl {name!r} is not in a separate kernel namespace")


def _dotted(name: str) -> str:
    """sysctl(8) also accepts "net/ipv4/ip_forward"; in that form a dot belongs to a name
    ("net/ipv4/conf/eth0.100/rp_filter"), so the two separators swap roles."""
    first = min((i for i in (name.find("."), name.find("/")) if i >= 0), default=-1)
    if first < 0 or name[first] == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def _is_host_network(namespaces: dict[str, str], proc: str) -> bool:
    if "network" not in namespaces:
        return True
    path = namespaces["network"]
    if not path:
        return False
    try:
        ours, theirs = os.stat(f"{proc}/self/ns/net"), os.stat(path)
    except OSError as exc:
        fail("linux.namespaces", f"cannot stat network namespace {path}: {exc.strerror}")
    return (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino)


def linux_warnings(linux: dict[str, Any]) -> list[str]:
    if linux.get("mountLabel"):
        return [
            f"linux.mountLabel: selinux is not supported; label {linux['mountLabel']!r} is ignored"
        ]
    return []
