"""``HostCgroup``: the one ``CgroupManager`` for v1, v2 and hybrid hosts, and ``open_cgroup``.

Every resource is routed by controller: to its v1 hierarchy when the host mounts one, else to
the cgroup2 tree when cgroup2 offers that controller. So a hybrid host (v1 controllers plus a
cgroup2 mount holding, say, only hugetlb) needs no third backend: the cgroup gets a directory
in every v1 hierarchy (name=systemd included) and in the cgroup2 tree, processes are added to
all of them, and each limit lands wherever its controller lives. Device rules go to the v1
devices controller, or to an eBPF program on the cgroup2 directory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from runtime.errors import CgroupError
from runtime.oci.cgroups import devices_bpf, v1, v2
from runtime.oci.cgroups.base import (
    CgroupDir,
    CgroupFs,
    CgroupStats,
    Write,
    as_mapping,
    describe,
    normalize_path,
    parse_pids,
)
from runtime.oci.cgroups.layout import V2_MANAGED, CgroupLayout, Hierarchies, probe_hierarchies
from runtime.oci.cgroups.resources import (
    blkio_weight,
    check_sections,
    cpu_shares,
    cpuset_values,
    hugepage_limits,
    memory_limits,
    pids_limit,
    unified_values,
)

logger = logging.getLogger(__name__)

DESTROY_TIMEOUT = 5.0

Plan = list[tuple[CgroupDir, list[Write]]]
Translate = Callable[[CgroupDir], list[Write]]


def open_cgroup(
    cgroups_path: str,
    *,
    cgroup_root: str = "/sys/fs/cgroup",
    mountinfo: str = "/proc/self/mountinfo",
    fs: CgroupFs | None = None,
) -> HostCgroup:
    """The manager for ``cgroups_path`` (OCI linux.cgroupsPath; relative paths go under
    /playground). Probing is cached per (cgroup_root, mountinfo); nothing is created yet."""
    hierarchies = probe_hierarchies(cgroup_root.rstrip("/") or "/", mountinfo)
    return HostCgroup(cgroups_path, hierarchies, fs or CgroupFs())


class HostCgroup:
    """A container's cgroup on a real (or, with a fake ``fs``, simulated) host."""

    def __init__(self, cgroups_path: str, hierarchies: Hierarchies, fs: CgroupFs) -> None:
        self.path = normalize_path(cgroups_path)
        self.layout: CgroupLayout = hierarchies.layout
        self._h = hierarchies
        self._fs = fs
        self._parts = self.path.strip("/").split("/")
        self._v1 = {m: CgroupDir(fs, self.path, m + self.path) for m in hierarchies.v1_mounts}
        self._unified = (
            CgroupDir(fs, self.path, hierarchies.unified + self.path)
            if hierarchies.unified is not None
            else None
        )

    def dirs(self) -> list[CgroupDir]:
        """This cgroup's directory in every hierarchy, v1 first."""
        out = list(self._v1.values())
        if self._unified is not None:
            out.append(self._unified)
        return out

    def _locate(self, v1_name: str, v2_name: str) -> tuple[CgroupDir, bool] | None:
        """Where a controller lives: (directory, is_cgroup2), or None."""
        mount = self._h.v1.get(v1_name)
        if mount is not None:
            return self._v1[mount], False
        if self._unified is not None and v2_name in self._h.unified_controllers:
            return self._unified, True
        return None

    def _primary(self) -> CgroupDir:
        """The directory whose cgroup.procs lists the container's processes."""
        if self._unified is not None:
            return self._unified
        return self._v1[self._h.v1.get("freezer", self._h.v1_mounts[0])]

    # -- create -----------------------------------------------------------------------------

    def create(self) -> None:
        logger.debug("cgroup %s: creating (%s)", self.path, self.layout)
        cpuset = self._h.v1.get("cpuset")
        for mount, d in self._v1.items():
            created = self._mkdirs(mount)
            if mount == cpuset:
                self._setup_cpuset(mount, d, created)
        if self._unified is not None and self._h.unified is not None:
            self._mkdirs(self._h.unified)
            wanted = self._h.unified_controllers & V2_MANAGED
            v2.enable_controllers(self._fs, self.path, self._h.unified, self._parts, wanted)

    def _mkdirs(self, mount: str) -> list[str]:
        """mkdir -p of this cgroup below ``mount``; returns the directories it made, top first.
        Usually the parent exists and this is one mkdir."""
        leaf = mount + self.path
        try:
            return [leaf] if self._fs.mkdir(leaf) else []
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CgroupError(self.path, f"cannot create {leaf}: {describe(exc)}") from exc
        created = []
        for i in range(1, len(self._parts) + 1):
            path = f"{mount}/{'/'.join(self._parts[:i])}"
            try:
                if self._fs.mkdir(path):
                    created.append(path)
            except OSError as exc:
                raise CgroupError(self.path, f"cannot create {path}: {describe(exc)}") from exc
        return created

    def _setup_cpuset(self, mount: str, leaf: CgroupDir, created: list[str]) -> None:
        # cgroup.clone_children on our intermediate directories makes the kernel copy
        # cpus/mems into every later container's directory, so the usual cost is one read.
        for path in created:
            if path != leaf.path:
                d = CgroupDir(self._fs, self.path, path)
                v1.ensure_cpuset(d, mount)
                d.write("cgroup.clone_children", "1", "cpu.cpus")
        v1.ensure_cpuset(leaf, mount)

    # -- apply ------------------------------------------------------------------------------

    def apply(self, resources: Mapping[str, Any]) -> None:
        """Write OCI linux.resources. Everything is validated and translated before the
        first write, so a bad value leaves the cgroup untouched."""
        check_sections(resources, self.path)
        if resources.get("rdma"):
            raise CgroupError(self.path, "rdma: not supported")
        plan: Plan = []
        steps = (self._plan_memory, self._plan_cpu, self._plan_pids, self._plan_blkio)
        for step in (*steps, self._plan_hugetlb, self._plan_network):
            step(resources, plan)
        program = self._plan_devices(resources, plan)
        self._plan_unified(resources, plan)  # last: raw values override translated ones
        for d, writes in plan:
            d.write_all(writes)
        if program is not None and self._unified is not None:
            try:
                self._fs.attach_device_filter(self._unified.path, program)
            except OSError as exc:
                raise CgroupError(self.path, f"devices: cannot attach eBPF filter: {exc}") from exc

    def _route(
        self, plan: Plan, names: tuple[str, str], field: str, on_v1: Translate, on_v2: Translate
    ) -> None:
        where = self._locate(*names)
        if where is None:
            # Translate anyway so a malformed value is reported as such.
            if on_v2(self._primary()):
                raise CgroupError(self.path, f"{field}: no {names[1]} controller on this host")
            return
        d, is_v2 = where
        writes = on_v2(d) if is_v2 else on_v1(d)
        if writes:
            plan.append((d, writes))

    def _plan_memory(self, res: Mapping[str, Any], plan: Plan) -> None:
        mem = as_mapping(res.get("memory"), "memory", self.path)
        limit, swap = memory_limits(mem, self.path)
        self._route(
            plan,
            ("memory", "memory"),
            "memory",
            lambda d: v1.memory_writes(mem, limit, swap, self.path),
            lambda d: v2.memory_writes(mem, limit, swap, self.path),
        )

    def _plan_cpu(self, res: Mapping[str, Any], plan: Plan) -> None:
        cpu = as_mapping(res.get("cpu"), "cpu", self.path)
        shares = cpu_shares(cpu, self.path)
        self._route(
            plan,
            ("cpu", "cpu"),
            "cpu",
            lambda d: v1.cpu_writes(cpu, shares, self.path),
            lambda d: v2.cpu_writes(cpu, shares, self.path),
        )
        cpuset = [Write(f"cpuset.{k}", v, f) for k, v, f in cpuset_values(cpu, self.path)]
        self._route(plan, ("cpuset", "cpuset"), "cpu.cpus", lambda d: cpuset, lambda d: cpuset)

    def _plan_pids(self, res: Mapping[str, Any], plan: Plan) -> None:
        limit = pids_limit(as_mapping(res.get("pids"), "pids", self.path), self.path)
        writes = v1.pids_writes(limit)
        self._route(plan, ("pids", "pids"), "pids", lambda d: writes, lambda d: writes)

    def _plan_blkio(self, res: Mapping[str, Any], plan: Plan) -> None:
        bio = as_mapping(res.get("blockIO"), "blockIO", self.path)
        weight = blkio_weight(bio, self.path)
        self._route(
            plan,
            ("blkio", "io"),
            "blockIO",
            lambda d: v1.blkio_writes(d, bio, weight),
            lambda d: v2.io_writes(d, bio, weight),
        )

    def _plan_hugetlb(self, res: Mapping[str, Any], plan: Plan) -> None:
        limits = hugepage_limits(res.get("hugepageLimits"), self.path)
        self._route(
            plan,
            ("hugetlb", "hugetlb"),
            "hugepageLimits",
            lambda d: v1.hugetlb_writes(limits),
            lambda d: v2.hugetlb_writes(limits),
        )

    def _plan_network(self, res: Mapping[str, Any], plan: Plan) -> None:
        net = as_mapping(res.get("network"), "network", self.path)
        for name, writes in zip(
            ("net_cls", "net_prio"), v1.network_writes(net, self.path), strict=True
        ):
            mount = self._h.v1.get(name)
            if writes and mount is None:
                raise CgroupError(
                    self.path, f"{writes[0].field}: no {name} controller on this host"
                )
            if writes and mount is not None:
                plan.append((self._v1[mount], writes))

    def _plan_devices(self, res: Mapping[str, Any], plan: Plan) -> bytes | None:
        """v1 devices writes go into ``plan``; on cgroup2 returns the eBPF program to attach.
        An absent (null) devices list leaves access as the parent has it."""
        if res.get("devices") is None:
            return None
        rules = devices_bpf.parse_rules(res["devices"], self.path)
        mount = self._h.v1.get("devices")
        if mount is not None:
            plan.append((self._v1[mount], v1.device_writes(rules)))
            return None
        if self._unified is None:
            raise CgroupError(self.path, "devices: no devices controller on this host")
        return devices_bpf.build_program(rules)

    def _plan_unified(self, res: Mapping[str, Any], plan: Plan) -> None:
        values = unified_values(res.get("unified"), self.path)
        if not values:
            return
        if self._unified is None:
            raise CgroupError(self.path, "unified: this host has no cgroup v2 hierarchy")
        plan.append((self._unified, [Write(k, v, f"unified.{k}") for k, v in values]))

    # -- processes --------------------------------------------------------------------------

    def add_pid(self, pid: int) -> None:
        for d in self.dirs():
            d.write("cgroup.procs", str(pid), "cgroup.procs")

    def pids(self) -> list[int]:
        return parse_pids(self._primary().read_optional("cgroup.procs"))

    def _freezer(self) -> tuple[CgroupDir, bool] | None:
        mount = self._h.v1.get("freezer")
        if mount is not None:
            return self._v1[mount], False
        if self._unified is not None:
            return self._unified, True
        return None

    def _set_frozen(self, frozen: bool) -> None:
        where = self._freezer()
        if where is None:
            raise CgroupError(self.path, "freezer: no freezer on this host")
        d, is_v2 = where
        (v2.set_frozen if is_v2 else v1.set_frozen)(d, frozen)

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process. SIGKILL uses cgroup.kill when the kernel has it (atomic and
        recursive); otherwise freeze, signal each process, thaw, so nothing forks away."""
        if sig == signal.SIGKILL and self._cgroup_kill():
            return
        where = self._freezer()
        source = where[0] if where is not None else self._primary()
        if not parse_pids(source.read_optional("cgroup.procs")):
            return  # empty (or gone): nothing can fork its way in from outside
        frozen = False
        if where is not None:
            try:
                self._set_frozen(True)
                frozen = True
            except CgroupError as exc:
                logger.warning("cgroup %s: signalling without freezing: %s", self.path, exc)
        try:
            for pid in parse_pids(source.read_optional("cgroup.procs")):
                _signal(pid, sig)
        finally:
            if frozen:
                self._set_frozen(False)

    def _cgroup_kill(self) -> bool:
        if self._unified is None:
            return False
        try:
            self._fs.write(self._unified.file("cgroup.kill"), "1")
        except FileNotFoundError:
            return False  # kernel before 5.14, or the directory is gone
        except OSError as exc:
            raise CgroupError(self.path, f"cgroup.kill: {describe(exc)}") from exc
        return True

    # -- destroy ----------------------------------------------------------------------------

    def destroy(self) -> None:
        """Kill everything and remove the directory from every hierarchy. Already gone is
        success. Intermediate directories (/playground) are shared and stay."""
        logger.debug("cgroup %s: destroying", self.path)
        self.kill_all()
        deadline = time.monotonic() + DESTROY_TIMEOUT
        for d in self.dirs():
            self._remove(d.path, deadline)

    def _remove(self, path: str, deadline: float) -> None:
        delay = 0.0001
        while True:
            try:
                self._fs.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                busy = exc.errno in (errno.EBUSY, errno.ENOTEMPTY)
                if not busy or time.monotonic() > deadline:
                    raise CgroupError(self.path, f"cannot remove {path}: {describe(exc)}") from exc
            # Busy: child cgroups made inside the container, or processes still exiting.
            self._clear(path, deadline)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _clear(self, path: str, deadline: float) -> None:
        try:
            children = self._fs.subdirs(path)
        except FileNotFoundError:
            return
        for child in children:
            self._remove(child, deadline)
        d = CgroupDir(self._fs, self.path, path)
        for pid in parse_pids(d.read_optional("cgroup.procs")):
            _signal(pid, signal.SIGKILL)

    # -- counters ---------------------------------------------------------------------------

    def stats(self) -> CgroupStats:
        usage, limit, peak = 0, None, 0
        where = self._locate("memory", "memory")
        if where is not None:
            usage, limit, peak = (v2.memory_stats if where[1] else v1.memory_stats)(where[0])
        pids_current, pids_limit = 0, None
        where = self._locate("pids", "pids")
        if where is not None:
            pids_current, pids_limit = v2.pids_stats(where[0])
        cpu = 0
        if "cpuacct" in self._h.v1:
            cpu = v1.cpu_usage_ns(self._v1[self._h.v1["cpuacct"]])
        elif self._unified is not None:
            cpu = v2.cpu_usage_ns(self._unified)  # cpu.stat exists without the cpu controller
        return CgroupStats(cpu, usage, limit, peak, pids_current, pids_limit, self.oom_killed())

    def oom_killed(self) -> int:
        where = self._locate("memory", "memory")
        if where is None:
            return 0
        return (v2.oom_kills if where[1] else v1.oom_kills)(where[0])


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
