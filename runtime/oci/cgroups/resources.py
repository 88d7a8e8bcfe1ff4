"""Validation of OCI ``linux.resources`` values that mean the same on v1 and v2.

Each helper returns plain values (0 for "unset", as runc reads the spec) or raises
``CgroupError`` naming the field, before any control file is written.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from runtime.errors import CgroupError
from runtime.oci.cgroups.base import as_list, as_mapping, check_keys, opt_int

logger = logging.getLogger(__name__)

SECTIONS = frozenset(
    {
        "memory",
        "cpu",
        "pids",
        "blockIO",
        "hugepageLimits",
        "devices",
        "network",
        "rdma",
        "unified",
    }
)
MEMORY_KEYS = frozenset(
    {
        "limit",
        "reservation",
        "swap",
        "kernel",
        "kernelTCP",
        "swappiness",
        "disableOOMKiller",
        "useHierarchy",
        "checkBeforeUpdate",
    }
)
CPU_KEYS = frozenset(
    {
        "shares",
        "quota",
        "burst",
        "period",
        "realtimeRuntime",
        "realtimePeriod",
        "cpus",
        "mems",
        "idle",
    }
)
BLKIO_KEYS = frozenset(
    {
        "weight",
        "leafWeight",
        "weightDevice",
        "throttleReadBpsDevice",
        "throttleWriteBpsDevice",
        "throttleReadIOPSDevice",
        "throttleWriteIOPSDevice",
    }
)
_PAGE_SIZE = re.compile(r"^[0-9]+[KMG]B$")
MIN_SHARES = 2
MAX_SHARES = 262144


def check_sections(resources: Mapping[str, Any], cgroup: str) -> None:
    unknown = sorted(set(resources) - SECTIONS)
    if unknown:
        raise CgroupError(cgroup, f"{unknown[0]}: not a supported linux.resources field")


def memory_limits(mem: Mapping[str, Any], cgroup: str) -> tuple[int, int]:
    """(limit, swap) in bytes: 0 = unset, -1 = unlimited. ``swap`` is memory plus swap."""
    check_keys(mem, MEMORY_KEYS, "memory", cgroup)
    if mem.get("kernel") or mem.get("kernelTCP"):
        logger.debug("cgroup %s: ignoring deprecated memory.kernel/kernelTCP", cgroup)
    limit = opt_int(mem, "limit", "memory.limit", cgroup) or 0
    swap = opt_int(mem, "swap", "memory.swap", cgroup) or 0
    for name, value in (("limit", limit), ("swap", swap)):
        if value < -1:
            raise CgroupError(cgroup, f"memory.{name}: {value} is negative")
    if swap > 0 and limit <= 0:
        raise CgroupError(cgroup, "memory.swap: a finite swap limit needs a finite memory.limit")
    if swap > 0 and swap < limit:
        raise CgroupError(
            cgroup,
            f"memory.swap: {swap} is below memory.limit {limit} (it counts memory plus swap)",
        )
    return limit, swap


def cpu_shares(cpu: Mapping[str, Any], cgroup: str) -> int:
    """Validated cpu.shares (0 = unset); also rejects realtime settings, which need a
    realtime-enabled kernel and an rt budget we never hand out."""
    check_keys(cpu, CPU_KEYS, "cpu", cgroup)
    for key in ("realtimeRuntime", "realtimePeriod"):
        if opt_int(cpu, key, f"cpu.{key}", cgroup):
            raise CgroupError(cgroup, f"cpu.{key}: realtime scheduling is not supported")
    shares = opt_int(cpu, "shares", "cpu.shares", cgroup) or 0
    if shares and not MIN_SHARES <= shares <= MAX_SHARES:
        raise CgroupError(cgroup, f"cpu.shares: {shares} is not within {MIN_SHARES}-{MAX_SHARES}")
    return shares


def cpuset_values(cpu: Mapping[str, Any], cgroup: str) -> list[tuple[str, str, str]]:
    """(file suffix, value, field) for cpu.cpus and cpu.mems that are set."""
    out = []
    for key in ("cpus", "mems"):
        value = cpu.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or not re.fullmatch(r"[0-9,\-]+", value):
            raise CgroupError(cgroup, f"cpu.{key}: expected a list like 0-3,5, got {value!r}")
        out.append((key, value, f"cpu.{key}"))
    return out


def pids_limit(pids: Mapping[str, Any], cgroup: str) -> int:
    """pids.limit: 0 = unset, negative = unlimited."""
    check_keys(pids, frozenset({"limit"}), "pids", cgroup)
    return opt_int(pids, "limit", "pids.limit", cgroup) or 0


def hugepage_limits(value: Any, cgroup: str) -> list[tuple[str, int]]:
    out = []
    for i, raw in enumerate(as_list(value, "hugepageLimits", cgroup)):
        field = f"hugepageLimits[{i}]"
        entry = as_mapping(raw, field, cgroup)
        size = entry.get("pageSize")
        if not isinstance(size, str) or not _PAGE_SIZE.match(size):
            raise CgroupError(cgroup, f"{field}.pageSize: expected a size like 2MB, got {size!r}")
        limit = opt_int(entry, "limit", f"{field}.limit", cgroup)
        if limit is None or limit < 0:
            raise CgroupError(cgroup, f"{field}.limit: expected a byte count")
        out.append((size, limit))
    return out


def blkio_weight(bio: Mapping[str, Any], cgroup: str) -> int:
    check_keys(bio, BLKIO_KEYS, "blockIO", cgroup)
    if bio.get("leafWeight"):
        logger.debug("cgroup %s: ignoring blockIO.leafWeight (removed from the kernel)", cgroup)
    weight = opt_int(bio, "weight", "blockIO.weight", cgroup) or 0
    if weight and not 10 <= weight <= 1000:
        raise CgroupError(cgroup, f"blockIO.weight: {weight} is not within 10-1000")
    return weight


def unified_values(value: Any, cgroup: str) -> list[tuple[str, str]]:
    """linux.resources.unified: cgroup2 file name -> value, written as given."""
    forbidden = {"cgroup.procs", "cgroup.threads", "cgroup.kill", "cgroup.freeze"}
    forbidden |= {"cgroup.subtree_control", "cgroup.type"}
    out = []
    for key, raw in as_mapping(value, "unified", cgroup).items():
        if not key or "/" in key or key.startswith(".") or key in forbidden:
            raise CgroupError(cgroup, f"unified.{key}: not a file this runtime lets you set")
        if not isinstance(raw, str):
            raise CgroupError(cgroup, f"unified.{key}: expected a string value")
        out.append((key, raw))
    return out
