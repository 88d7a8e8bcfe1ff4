"""cgroup v1 control files: translating OCI resources into writes, cpuset setup, the freezer
and reading counters. One directory per controller hierarchy; the manager picks which.

Translations are pure (OCI section -> list of ``Write``) so they are validated in full before
anything is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from runtime.errors import CgroupError
from runtime.oci.cgroups.base import (
    CgroupDir,
    Write,
    as_list,
    as_mapping,
    opt_int,
    parse_int,
    parse_keyed,
)
from runtime.oci.cgroups.devices_bpf import DeviceRule

logger = logging.getLogger(__name__)

# page_counter's "no limit" (LONG_MAX rounded down to a page) as v1 prints it.
UNLIMITED_BYTES = 0x7FFFFFFFFFFFF000
FREEZE_TIMEOUT = 2.0


def memory_writes(mem: Mapping[str, Any], limit: int, swap: int, cgroup: str) -> list[Write]:
    """OCI memory -> memory.* writes; ``limit`` and ``swap`` come from ``memory_limits``."""
    writes = []
    if limit:
        # memsw must stay >= limit: limit first when lowering, memsw first when raising.
        writes.append(Write("memory.limit_in_bytes", str(limit), "memory.limit", bool(swap)))
    if swap:
        writes.append(Write("memory.memsw.limit_in_bytes", str(swap), "memory.swap"))
    reservation = opt_int(mem, "reservation", "memory.reservation", cgroup)
    if reservation:
        writes.append(Write("memory.soft_limit_in_bytes", str(reservation), "memory.reservation"))
    swappiness = opt_int(mem, "swappiness", "memory.swappiness", cgroup)
    if swappiness is not None:
        if not 0 <= swappiness <= 100:
            raise CgroupError(cgroup, f"memory.swappiness: {swappiness} is not within 0-100")
        writes.append(Write("memory.swappiness", str(swappiness), "memory.swappiness"))
    if mem.get("disableOOMKiller"):
        writes.append(Write("memory.oom_control", "1", "memory.disableOOMKiller"))
    return writes


def cpu_writes(cpu: Mapping[str, Any], shares: int, cgroup: str) -> list[Write]:
    writes = []
    if shares:
        writes.append(Write("cpu.shares", str(shares), "cpu.shares"))
    period = opt_int(cpu, "period", "cpu.period", cgroup)
    if period:
        writes.append(Write("cpu.cfs_period_us", str(period), "cpu.period"))
    quota = opt_int(cpu, "quota", "cpu.quota", cgroup)
    if quota:
        writes.append(Write("cpu.cfs_quota_us", str(quota if quota > 0 else -1), "cpu.quota"))
    burst = opt_int(cpu, "burst", "cpu.burst", cgroup)
    if burst is not None:
        writes.append(Write("cpu.cfs_burst_us", str(burst), "cpu.burst"))
    idle = opt_int(cpu, "idle", "cpu.idle", cgroup)
    if idle is not None:
        writes.append(Write("cpu.idle", str(idle), "cpu.idle"))
    return writes


def pids_writes(limit: int) -> list[Write]:
    if not limit:
        return []
    return [Write("pids.max", str(limit) if limit > 0 else "max", "pids.limit")]


def hugetlb_writes(limits: list[tuple[str, int]]) -> list[Write]:
    return [
        Write(f"hugetlb.{size}.limit_in_bytes", str(limit), "hugepageLimits")
        for size, limit in limits
    ]


def device_writes(rules: list[DeviceRule]) -> list[Write]:
    """Deny everything, then each rule in order (the kernel keeps the v1 semantics). Specs
    usually start with that deny-all themselves; it is written once."""
    writes = [Write("devices.deny", "a", "devices")]
    if rules and rules[0] == DeviceRule(False, "a", None, None, "rwm"):
        rules = rules[1:]
    for rule in rules:
        file = "devices.allow" if rule.allow else "devices.deny"
        writes.append(Write(file, rule.v1_line(), "devices"))
    return writes


def blkio_writes(d: CgroupDir, bio: Mapping[str, Any], weight: int) -> list[Write]:
    """blockIO -> blkio.*; the weight goes to blkio.weight, or blkio.bfq.weight under BFQ."""
    cg = d.cgroup
    writes = []
    # Probed only when a weight is set: blkio.weight is CFQ's, BFQ names it blkio.bfq.weight.
    bfq = (weight or bio.get("weightDevice")) and not d.has("blkio.weight")
    if weight:
        name = "blkio.bfq.weight" if bfq else "blkio.weight"
        writes.append(Write(name, str(weight), "blockIO.weight"))
    for i, dev in enumerate(as_list(bio.get("weightDevice"), "blockIO.weightDevice", cg)):
        field = f"blockIO.weightDevice[{i}]"
        w = opt_int(as_mapping(dev, field, cg), "weight", field, cg)
        if w:
            name = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
            writes.append(Write(name, f"{_devno(dev, field, cg)} {w}", field))
    for key, file in _THROTTLE_FILES.items():
        for i, dev in enumerate(as_list(bio.get(key), f"blockIO.{key}", cg)):
            field = f"blockIO.{key}[{i}]"
            rate = opt_int(as_mapping(dev, field, cg), "rate", field, cg) or 0
            writes.append(Write(file, f"{_devno(dev, field, cg)} {rate}", field))
    return writes


_THROTTLE_FILES = {
    "throttleReadBpsDevice": "blkio.throttle.read_bps_device",
    "throttleWriteBpsDevice": "blkio.throttle.write_bps_device",
    "throttleReadIOPSDevice": "blkio.throttle.read_iops_device",
    "throttleWriteIOPSDevice": "blkio.throttle.write_iops_device",
}


def _devno(dev: Mapping[str, Any], field: str, cgroup: str) -> str:
    major = opt_int(dev, "major", f"{field}.major", cgroup)
    minor = opt_int(dev, "minor", f"{field}.minor", cgroup)
    if major is None or minor is None or major < 0 or minor < 0:
        raise CgroupError(cgroup, f"{field}: needs major and minor device numbers")
    return f"{major}:{minor}"


def ensure_cpuset(d: CgroupDir, mount: str) -> None:
    """A new v1 cpuset cgroup starts with empty cpus and mems, and tasks cannot join it until
    they are set. Copy them from the parent (fixing the parent first if it is empty too)."""
    if d.path == mount:
        return
    cpus = d.read("cpuset.cpus", "cpu.cpus").strip()
    if cpus:
        return
    parent = CgroupDir(d.fs, d.cgroup, d.path.rsplit("/", 1)[0])
    ensure_cpuset(parent, mount)
    # mems first: a non-empty cpus is the sign that both were copied.
    d.write("cpuset.mems", parent.read("cpuset.mems", "cpu.mems").strip(), "cpu.mems")
    d.write("cpuset.cpus", parent.read("cpuset.cpus", "cpu.cpus").strip(), "cpu.cpus")


def set_frozen(d: CgroupDir, frozen: bool) -> None:
    """Write freezer.state and, when freezing, wait until every task is FROZEN."""
    state = "FROZEN" if frozen else "THAWED"
    d.write("freezer.state", state, "freezer")
    if not frozen:
        return
    deadline = time.monotonic() + FREEZE_TIMEOUT
    delay = 0.0002
    while d.read("freezer.state", "freezer").strip() != "FROZEN":
        if time.monotonic() > deadline:
            d.write("freezer.state", "THAWED", "freezer")
            raise CgroupError(d.cgroup, "freezer: timed out waiting for tasks to freeze")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
        # Tasks that were forking while we froze need the state written again.
        d.write("freezer.state", state, "freezer")


def oom_kills(d: CgroupDir) -> int:
    return parse_keyed(d.read_optional("memory.oom_control")).get("oom_kill", 0)


def memory_stats(d: CgroupDir) -> tuple[int, int | None, int]:
    """(usage, limit or None when unlimited, max usage)."""
    limit = parse_int(d.read_optional("memory.limit_in_bytes"))
    return (
        parse_int(d.read_optional("memory.usage_in_bytes")),
        None if limit == 0 or limit >= UNLIMITED_BYTES else limit,
        parse_int(d.read_optional("memory.max_usage_in_bytes")),
    )


def cpu_usage_ns(d: CgroupDir) -> int:
    return parse_int(d.read_optional("cpuacct.usage"))


def network_writes(net: Mapping[str, Any], cgroup: str) -> tuple[list[Write], list[Write]]:
    """(net_cls writes, net_prio writes) for linux.resources.network."""
    cls = []
    class_id = opt_int(net, "classID", "network.classID", cgroup)
    if class_id is not None:
        cls.append(Write("net_cls.classid", str(class_id), "network.classID"))
    prio = []
    for i, raw in enumerate(as_list(net.get("priorities"), "network.priorities", cgroup)):
        field = f"network.priorities[{i}]"
        entry = as_mapping(raw, field, cgroup)
        name = entry.get("name")
        value = opt_int(entry, "priority", f"{field}.priority", cgroup)
        if not isinstance(name, str) or not name or value is None:
            raise CgroupError(cgroup, f"{field}: needs an interface name and a priority")
        prio.append(Write("net_prio.ifpriomap", f"{name} {value}", field))
    return cls, prio
