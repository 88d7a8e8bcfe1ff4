"""The ``process`` section: what the container's init executes, as whom, with which
capabilities and resource limits.
"""

from __future__ import annotations

from typing import Any

from runtime.oci.spec.checks import (
    ID_MAX,
    UINT32_MAX,
    UINT64_MAX,
    absolute_path,
    boolean,
    environment,
    fail,
    integer,
    list_of,
    obj,
    one_of,
    string,
    strings,
    unsupported,
)
from runtime.oci.spec.tables import CAPABILITIES, RLIMITS

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def _args(value: Any, path: str) -> None:
    strings(value, path)
    if not value:
        fail(path, "must name the program to run")
    if not value[0]:
        fail(f"{path}[0]", "must not be empty")


def _capability_list(value: Any, path: str) -> None:
    if type(value) is not list:
        fail(path, "must be a list")
    for index, name in enumerate(value):
        if type(name) is not str or name not in CAPABILITIES:
            fail(f"{path}[{index}]", f"unknown capability {name!r}")


_CAPABILITY_FIELDS = obj({name: _capability_list for name in CAPABILITY_SETS})


def _capabilities(value: Any, path: str) -> None:
    """The kernel refuses an effective capability that is not permitted (capset fails) and an
    ambient one that is not both permitted and inheritable (PR_CAP_AMBIENT_RAISE fails), so
    catch both here rather than as an EPERM from inside a half-made container."""
    _CAPABILITY_FIELDS(value, path)
    permitted = set(value.get("permitted") or ())
    inheritable = set(value.get("inheritable") or ())
    for index, name in enumerate(value.get("effective") or ()):
        if name not in permitted:
            fail(f"{path}.effective[{index}]", f"{name} is not in the permitted set")
    for index, name in enumerate(value.get("ambient") or ()):
        if name not in permitted or name not in inheritable:
            fail(f"{path}.ambient[{index}]", f"{name} is not in both permitted and inheritable")


_RLIMIT_FIELDS = obj(
    {
        "type": one_of(RLIMITS, "rlimit"),
        "soft": integer(0, UINT64_MAX),
        "hard": integer(0, UINT64_MAX),
    },
    required=("type", "soft", "hard"),
)


def _rlimit(value: Any, path: str) -> None:
    _RLIMIT_FIELDS(value, path)
    if value["soft"] > value["hard"]:
        fail(f"{path}.soft", f"soft limit {value['soft']} is above hard limit {value['hard']}")


_RLIMIT_LIST = list_of(_rlimit)


def _rlimits(value: Any, path: str) -> None:
    _RLIMIT_LIST(value, path)
    seen: set[str] = set()
    for index, limit in enumerate(value):
        if limit["type"] in seen:
            fail(f"{path}[{index}].type", f"duplicate rlimit {limit['type']}")
        seen.add(limit["type"])


_USER = obj(
    {
        "uid": integer(0, ID_MAX),
        "gid": integer(0, ID_MAX),
        "umask": integer(0, 0o777),
        "additionalGids": list_of(integer(0, ID_MAX)),
        "username": unsupported("windows only, not supported by playground"),
    },
    required=("uid", "gid"),
)

_CONSOLE_SIZE = obj(
    {"height": integer(0, UINT32_MAX), "width": integer(0, UINT32_MAX)},
    required=("height", "width"),
)

PROCESS = obj(
    {
        "terminal": boolean,
        "consoleSize": _CONSOLE_SIZE,
        "user": _USER,
        "args": _args,
        "env": environment,
        "cwd": absolute_path,
        "capabilities": _capabilities,
        "rlimits": _rlimits,
        "noNewPrivileges": boolean,
        "oomScoreAdj": integer(-1000, 1000),
        # Neither LSM is driven by playground; a label is reported, not silently honoured.
        "apparmorProfile": string,
        "selinuxLabel": string,
        "scheduler": unsupported(),
        "ioPriority": unsupported(),
        "execCPUAffinity": unsupported(),
        "commandLine": unsupported("windows only, not supported by playground"),
    },
    required=("user", "args", "cwd"),
)


def process_warnings(process: dict[str, Any]) -> list[str]:
    warnings = []
    if process.get("apparmorProfile"):
        warnings.append(
            f"process.apparmorProfile: apparmor is not supported; "
            f"profile {process['apparmorProfile']!r} is ignored"
        )
    if process.get("selinuxLabel"):
        warnings.append(
            f"process.selinuxLabel: selinux is not supported; "
            f"label {process['selinuxLabel']!r} is ignored"
        )
    return warnings
