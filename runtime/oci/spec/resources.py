"""The ``linux.resources`` section: cgroup limits for memory, CPU, pids, devices, block I/O
and hugepages, and raw ``unified`` (cgroup v2) files.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.oci.spec.checks import (
    INT64_MAX,
    INT64_MIN,
    UINT32_MAX,
    UINT64_MAX,
    boolean,
    child,
    fail,
    integer,
    list_of,
    obj,
    one_of,
    string,
    text,
    unsupported,
)

# -1 means "unlimited" for the byte counts, as in runc.
_BYTES = integer(-1, INT64_MAX)
_UINT64 = integer(0, UINT64_MAX)
_MAJOR_MINOR = integer(0, INT64_MAX)
_CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
_PAGE_SIZE = re.compile(r"\d+[KMG]B")
_UNIFIED_KEY = re.compile(r"[a-z_]+\.[a-zA-Z0-9_.]+")

_MEMORY_FIELDS = obj(
    {
        "limit": _BYTES,
        "reservation": _BYTES,
        "swap": _BYTES,
        "kernel": _BYTES,
        "kernelTCP": _BYTES,
        "swappiness": integer(0, 100),
        "disableOOMKiller": boolean,
        "useHierarchy": boolean,
        "checkBeforeUpdate": unsupported(),
    }
)


def _memory(value: Any, path: str) -> None:
    """``swap`` counts memory plus swap (the v1 file's meaning), so a finite one needs a finite
    memory limit no larger than itself, on either cgroup version."""
    _MEMORY_FIELDS(value, path)
    limit, swap = value.get("limit") or 0, value.get("swap") or 0
    if swap > 0 and limit <= 0:
        fail(f"{path}.swap", "a finite memory+swap limit needs a finite memory limit")
    if swap > 0 and swap < limit:
        fail(f"{path}.swap", f"memory+swap limit {swap} is below the memory limit {limit}")


def _cpu_list(value: Any, path: str) -> None:
    string(value, path)
    if value and not _CPU_LIST.fullmatch(value):
        fail(path, f"must be a list like '0-3,5', not {value!r}")


_REALTIME = integer(INT64_MIN, INT64_MAX)


def _realtime(value: Any, path: str) -> None:
    """Realtime budgets need a CONFIG_RT_GROUP_SCHED kernel and host-wide planning; 0 is the
    only value accepted, as some generators always write the field."""
    _REALTIME(value, path)
    if value:
        fail(path, "realtime scheduling is not supported by playground")


_CPU = obj(
    {
        "shares": _UINT64,
        "quota": integer(-1, INT64_MAX),
        "burst": _UINT64,
        "period": _UINT64,
        "realtimeRuntime": _realtime,
        "realtimePeriod": _realtime,
        "cpus": _cpu_list,
        "mems": _cpu_list,
        "idle": integer(0, 1),
    }
)

_PIDS = obj({"limit": integer(-1, INT64_MAX)}, required=("limit",))


def _access(value: Any, path: str) -> None:
    string(value, path)
    if set(value) - set("rwm") or len(set(value)) != len(value):
        fail(path, f"must be made of the letters r, w and m at most once each, not {value!r}")


_DEVICE_RULE = obj(
    {
        "allow": boolean,
        "type": one_of(("a", "c", "b"), "device type"),
        "major": _MAJOR_MINOR,
        "minor": _MAJOR_MINOR,
        "access": _access,
    },
    required=("allow",),
)


def _page_size(value: Any, path: str) -> None:
    string(value, path)
    if not _PAGE_SIZE.fullmatch(value):
        fail(path, f"must look like '2MB' or '1GB', not {value!r}")


_HUGEPAGE_LIMIT = obj({"pageSize": _page_size, "limit": _UINT64}, required=("pageSize", "limit"))

_WEIGHT = integer(10, 1000)
_WEIGHT_DEVICE = obj(
    {"major": _MAJOR_MINOR, "minor": _MAJOR_MINOR, "weight": _WEIGHT, "leafWeight": _WEIGHT},
    required=("major", "minor"),
)
_THROTTLE_DEVICE = list_of(
    obj(
        {"major": _MAJOR_MINOR, "minor": _MAJOR_MINOR, "rate": _UINT64},
        required=("major", "minor", "rate"),
    )
)
_BLOCK_IO = obj(
    {
        "weight": _WEIGHT,
        "leafWeight": _WEIGHT,
        "weightDevice": list_of(_WEIGHT_DEVICE),
        "throttleReadBpsDevice": _THROTTLE_DEVICE,
        "throttleWriteBpsDevice": _THROTTLE_DEVICE,
        "throttleReadIOPSDevice": _THROTTLE_DEVICE,
        "throttleWriteIOPSDevice": _THROTTLE_DEVICE,
    }
)

_NETWORK = obj(
    {
        "classID": integer(0, UINT32_MAX),
        "priorities": list_of(
            obj(
                {"name": text, "priority": integer(0, UINT32_MAX)},
                required=("name", "priority"),
            )
        ),
    }
)


def _unified(value: Any, path: str) -> None:
    """Keys are file names inside the container's cgroup, so they must not climb out of it."""
    if type(value) is not dict:
        fail(path, "must be an object")
    for key, entry in value.items():
        if not _UNIFIED_KEY.fullmatch(key) or ".." in key:
            fail(child(path, key), "must name a cgroup file like 'memory.high'")
        string(entry, child(path, key))


RESOURCES = obj(
    {
        "memory": _memory,
        "cpu": _CPU,
        "pids": _PIDS,
        "devices": list_of(_DEVICE_RULE),
        "hugepageLimits": list_of(_HUGEPAGE_LIMIT),
        "blockIO": _BLOCK_IO,
        "unified": _unified,
        # net_cls/net_prio exist on cgroup v1 only; runtime.oci.cgroups refuses them elsewhere.
        "network": _NETWORK,
        "rdma": unsupported(),
    }
)
