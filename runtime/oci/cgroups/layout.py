"""Which cgroup hierarchies a host mounts: probing /proc/self/mountinfo once per process.

Owns ``CgroupLayout`` (v1, v2 or hybrid) and ``Hierarchies`` (each v1 controller's mountpoint,
the cgroup2 mountpoint and the controllers cgroup2 offers). Only mounts at or below
``cgroup_root`` count. Probing reads two small files, and its result is cached per
(cgroup_root, mountinfo), so it is off the per-container hot path.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.errors import CgroupError
from runtime.oci.cgroups.base import CgroupFs

logger = logging.getLogger(__name__)

V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
# cgroup2 controllers enabled for our subtree when the host offers them.
V2_MANAGED = frozenset({"cpu", "cpuset", "io", "memory", "pids", "hugetlb"})

_OCTAL = re.compile(r"\\([0-7]{3})")


class CgroupLayout(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"


@dataclass(frozen=True, slots=True)
class Hierarchies:
    layout: CgroupLayout
    v1: Mapping[str, str]  # controller (or "name=systemd") -> mountpoint
    v1_mounts: tuple[str, ...]  # every v1 mountpoint, once each
    unified: str | None  # the cgroup2 mountpoint
    unified_controllers: frozenset[str]  # the cgroup2 root's cgroup.controllers


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def parse_mountinfo(text: str, cgroup_root: str) -> tuple[dict[str, set[str]], str | None]:
    """v1 mountpoint -> controllers, and the cgroup2 mountpoint, for mounts under the root."""
    v1: dict[str, set[str]] = {}
    unified: str | None = None
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            fstype, superopts = fields[sep + 1], fields[sep + 3]
        except (ValueError, IndexError):
            continue
        mountpoint = _unescape(fields[4])
        if fstype not in ("cgroup", "cgroup2") or not _under(mountpoint, cgroup_root):
            continue
        if fstype == "cgroup2":
            unified = mountpoint
            continue
        opts = set(superopts.split(","))
        controllers = (opts & V1_CONTROLLERS) | {o for o in opts if o.startswith("name=")}
        if controllers:
            v1[mountpoint] = controllers
    return v1, unified


@functools.lru_cache(maxsize=32)
def probe_hierarchies(
    cgroup_root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo"
) -> Hierarchies:
    fs = CgroupFs()
    try:
        text = fs.read(mountinfo)
    except OSError as exc:
        raise CgroupError(cgroup_root, f"cannot read {mountinfo}: {exc.strerror}") from exc
    mounts, unified = parse_mountinfo(text, cgroup_root)
    by_controller: dict[str, str] = {}
    for mountpoint, controllers in mounts.items():
        for controller in controllers:
            by_controller.setdefault(controller, mountpoint)
    available: frozenset[str] = frozenset()
    if unified is not None:
        try:
            available = frozenset(fs.read(f"{unified}/cgroup.controllers").split())
        except OSError:
            logger.debug("no cgroup.controllers in %s", unified)
    if mounts and unified is not None:
        layout = CgroupLayout.HYBRID
    elif unified is not None:
        layout = CgroupLayout.V2
    elif mounts:
        layout = CgroupLayout.V1
    else:
        raise CgroupError(cgroup_root, "no cgroup hierarchy is mounted there")
    logger.debug("cgroup layout under %s: %s", cgroup_root, layout)
    return Hierarchies(layout, by_controller, tuple(mounts), unified, available)


def probe_layout(
    cgroup_root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo"
) -> CgroupLayout:
    """v1, v2 or hybrid, from the cgroup mounts at or below ``cgroup_root``."""
    return probe_hierarchies(cgroup_root, mountinfo).layout
