"""cgroup v2 control files: translating OCI resources (which are written in v1 terms) into v2
writes, enabling controllers down the tree, cgroup.freeze and cgroup.kill, and counters.

Translations follow runc's: cpu.weight = 1 + ((shares - 2) * 9999) / 262142,
cpu.max = "quota period", memory.swap.max = swap - limit (OCI swap counts memory plus swap),
io.weight = 1 + ((weight - 10) * 9999) / 990.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from runtime.errors import CgroupError
from runtime.oci.cgroups.base import (
    CgroupDir,
    CgroupFs,
    Write,
    as_list,
    as_mapping,
    describe,
    opt_int,
    parse_int,
    parse_keyed,
)

logger = logging.getLogger(__name__)

FREEZE_TIMEOUT = 2.0

_THROTTLE_KEYS = {
    "throttleReadBpsDevice": "rbps",
    "throttleWriteBpsDevice": "wbps",
    "throttleReadIOPSDevice": "riops",
    "throttleWriteIOPSDevice": "wiops",
}


def cpu_weight(shares: int) -> int:
    """v1 cpu.shares (2-262144) -> v2 cpu.weight (1-10000)."""
    return 1 + ((shares - 2) * 9999) // 262142


def io_weight(weight: int) -> int:
    """v1 blkio.weight (10-1000) -> v2 io.weight (1-10000)."""
    return 1 + ((weight - 10) * 9999) // 990


def _bytes(value: int) -> str:
    return "max" if value == -1 else str(value)


def memory_writes(mem: Mapping[str, Any], limit: int, swap: int, cgroup: str) -> list[Write]:
    """OCI memory -> memory.*; ``limit`` and ``swap`` come from ``memory_limits``."""
    if opt_int(mem, "swappiness", "memory.swappiness", cgroup) is not None:
        raise CgroupError(cgroup, "memory.swappiness: cgroup v2 has no per-cgroup swappiness")
    if mem.get("disableOOMKiller"):
        raise CgroupError(
            cgroup, "memory.disableOOMKiller: cgroup v2 cannot disable the OOM killer"
        )
    writes = []
    if limit:
        writes.append(Write("memory.max", _bytes(limit), "memory.limit"))
    if swap:
        value = "max" if swap == -1 or limit == -1 else str(swap - limit)
        writes.append(Write("memory.swap.max", value, "memory.swap"))
    reservation = opt_int(mem, "reservation", "memory.reservation", cgroup)
    if reservation:
        writes.append(Write("memory.low", _bytes(reservation), "memory.reservation"))
    return writes


def cpu_writes(cpu: Mapping[str, Any], shares: int, cgroup: str) -> list[Write]:
    writes = []
    if shares:
        writes.append(Write("cpu.weight", str(cpu_weight(shares)), "cpu.shares"))
    quota = opt_int(cpu, "quota", "cpu.quota", cgroup) or 0
    period = opt_int(cpu, "period", "cpu.period", cgroup) or 0
    if quota or period:
        value = str(quota) if quota > 0 else "max"
        if period:
            value += f" {period}"
        writes.append(Write("cpu.max", value, "cpu.quota" if quota else "cpu.period"))
    burst = opt_int(cpu, "burst", "cpu.burst", cgroup)
    if burst is not None:
        writes.append(Write("cpu.max.burst", str(burst), "cpu.burst"))
    idle = opt_int(cpu, "idle", "cpu.idle", cgroup)
    if idle is not None:
        writes.append(Write("cpu.idle", str(idle), "cpu.idle"))
    return writes


def hugetlb_writes(limits: list[tuple[str, int]]) -> list[Write]:
    return [Write(f"hugetlb.{size}.max", str(limit), "hugepageLimits") for size, limit in limits]


def io_writes(d: CgroupDir, bio: Mapping[str, Any], weight: int) -> list[Write]:
    """blockIO -> io.*: BFQ takes the v1 weight as is, io.weight needs it converted."""
    cg = d.cgroup
    writes = []
    if weight:
        if d.has("io.bfq.weight"):
            writes.append(Write("io.bfq.weight", str(weight), "blockIO.weight"))
        else:
            writes.append(Write("io.weight", str(io_weight(weight)), "blockIO.weight"))
    for i, dev in enumerate(as_list(bio.get("weightDevice"), "blockIO.weightDevice", cg)):
        field = f"blockIO.weightDevice[{i}]"
        w = opt_int(as_mapping(dev, field, cg), "weight", field, cg)
        if w:
            writes.append(Write("io.weight", f"{_devno(dev, field, cg)} {io_weight(w)}", field))
    for key, name in _THROTTLE_KEYS.items():
        for i, dev in enumerate(as_list(bio.get(key), f"blockIO.{key}", cg)):
            field = f"blockIO.{key}[{i}]"
            rate = opt_int(as_mapping(dev, field, cg), "rate", field, cg) or 0
            value = str(rate) if rate > 0 else "max"
            writes.append(Write("io.max", f"{_devno(dev, field, cg)} {name}={value}", field))
    return writes


def _devno(dev: Mapping[str, Any], field: str, cgroup: str) -> str:
    major = opt_int(dev, "major", f"{field}.major", cgroup)
    minor = opt_int(dev, "minor", f"{field}.minor", cgroup)
    if major is None or minor is None or major < 0 or minor < 0:
        raise CgroupError(cgroup, f"{field}: needs major and minor device numbers")
    return f"{major}:{minor}"


def enable_controllers(
    fs: CgroupFs, cgroup: str, mount: str, parts: list[str], wanted: frozenset[str]
) -> None:
    """Enable ``wanted`` in cgroup.subtree_control from the mount root down to the leaf's
    parent. One read on the common path: if the parent already delegates everything, every
    ancestor does too (a controller can only be delegated if it was delegated to you)."""
    if not wanted:
        return
    ancestors = [mount] + [f"{mount}/{'/'.join(parts[:i])}" for i in range(1, len(parts))]
    try:
        have = set(fs.read(f"{ancestors[-1]}/cgroup.subtree_control").split())
    except OSError as exc:
        raise CgroupError(cgroup, f"cannot read cgroup.subtree_control: {describe(exc)}") from exc
    missing = sorted(wanted - have)
    if not missing:
        return
    for ancestor in ancestors:
        _enable(fs, ancestor, missing)


def _enable(fs: CgroupFs, path: str, controllers: list[str]) -> None:
    target = f"{path}/cgroup.subtree_control"
    try:
        fs.write(target, " ".join(f"+{c}" for c in controllers))
        return
    except OSError:
        pass
    # One refused controller fails the whole write; enable the others one at a time. What
    # stays off surfaces later as a missing control file naming the OCI field.
    for controller in controllers:
        try:
            fs.write(target, f"+{controller}")
        except OSError as exc:
            logger.warning("cannot enable the %s controller in %s: %s", controller, path, exc)


def set_frozen(d: CgroupDir, frozen: bool) -> None:
    """Write cgroup.freeze and, when freezing, wait for cgroup.events to say frozen."""
    d.write("cgroup.freeze", "1" if frozen else "0", "freeze")
    if not frozen:
        return
    deadline = time.monotonic() + FREEZE_TIMEOUT
    delay = 0.0002
    while parse_keyed(d.read("cgroup.events", "freeze")).get("frozen") != 1:
        if time.monotonic() > deadline:
            d.write("cgroup.freeze", "0", "freeze")
            raise CgroupError(d.cgroup, "freeze: timed out waiting for tasks to freeze")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def oom_kills(d: CgroupDir) -> int:
    return parse_keyed(d.read_optional("memory.events")).get("oom_kill", 0)


def _limit(text: str | None) -> int | None:
    value = (text or "").strip()
    return None if value in ("", "max") else int(value)


def memory_stats(d: CgroupDir) -> tuple[int, int | None, int]:
    """(usage, limit or None when unlimited, peak usage or 0 before Linux 5.19)."""
    return (
        parse_int(d.read_optional("memory.current")),
        _limit(d.read_optional("memory.max")),
        parse_int(d.read_optional("memory.peak")),
    )


def pids_stats(d: CgroupDir) -> tuple[int, int | None]:
    """(current, limit or None) from pids.current / pids.max; the files are the same on v1."""
    return parse_int(d.read_optional("pids.current")), _limit(d.read_optional("pids.max"))


def cpu_usage_ns(d: CgroupDir) -> int:
    return parse_keyed(d.read_optional("cpu.stat")).get("usage_usec", 0) * 1000
