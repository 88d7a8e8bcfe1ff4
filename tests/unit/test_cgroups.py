"""runtime.oci.cgroups against simulated cgroupfs trees in tmp_path (no root needed).

``SimFs`` stands in for the kernel: mkdir fills a new directory with the control files its
hierarchy would have, rmdir removes them (and refuses while processes are inside), writes
truncate, and a few files act like the kernel's (cgroup.procs, cgroup.kill, cgroup.freeze,
subtree_control, the v1 memory/memsw invariant, cpuset clone_children). Each host is built
with a fake mountinfo file, so probing runs the real parser.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import CgroupError
from runtime.oci.cgroups import (
    CgroupFs,
    CgroupLayout,
    CgroupManager,
    FakeCgroup,
    HostCgroup,
    open_cgroup,
    probe_layout,
)
from runtime.oci.cgroups import devices_bpf as bpf
from runtime.oci.cgroups.base import normalize_path
from runtime.oci.cgroups.layout import parse_mountinfo
from runtime.oci.cgroups.v2 import cpu_weight, io_weight

V1_UNLIMITED = "9223372036854771712"
COMMON_V1 = {"cgroup.procs": "", "tasks": "", "cgroup.clone_children": "0"}
V1_FILES: dict[str, dict[str, str]] = {
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.idle": "0",
    },
    "cpuacct": {"cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {
        "memory.limit_in_bytes": V1_UNLIMITED,
        "memory.soft_limit_in_bytes": V1_UNLIMITED,
        "memory.memsw.limit_in_bytes": V1_UNLIMITED,
        "memory.usage_in_bytes": "0",
        "memory.max_usage_in_bytes": "0",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        "memory.swappiness": "60",
    },
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "blkio": {"blkio.bfq.weight": "100", "blkio.throttle.read_bps_device": ""},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "systemd": {},
}
V1_OPTS = {name: name for name in V1_FILES} | {"systemd": "name=systemd"}
V2_CORE = {
    "cgroup.procs": "",
    "cgroup.controllers": "",
    "cgroup.subtree_control": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0",
    "cgroup.kill": "",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_FILES: dict[str, dict[str, str]] = {
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "io": {"io.weight": "default 100", "io.max": ""},
    "memory": {
        "memory.max": "max",
        "memory.low": "0",
        "memory.swap.max": "max",
        "memory.current": "0",
        "memory.peak": "0",
        "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    },
    "pids": {"pids.max": "max", "pids.current": "0"},
    "hugetlb": {"hugetlb.2MB.max": "max"},
}
ALL_V2 = "cpuset cpu io memory hugetlb pids"


class SimFs(CgroupFs):
    """A cgroupfs that behaves enough like the kernel for the manager's logic."""

    def __init__(self, kinds: dict[str, str], *, memsw: bool = True) -> None:
        self.kinds = kinds  # mountpoint -> v1 controller name, or "v2"
        self.memsw = memsw
        self.writes: list[tuple[str, str]] = []
        self.attached: list[tuple[str, bytes]] = []

    def _mount(self, path: str) -> str:
        return max((m for m in self.kinds if path.startswith(m + "/")), key=len)

    def populate(self, path: str, parent: str) -> None:
        kind = self.kinds[self._mount(path)]
        if kind == "v2":
            files = dict(V2_CORE)
            for controller in Path(parent, "cgroup.subtree_control").read_text().split():
                files |= V2_FILES[controller]
            files["cgroup.controllers"] = Path(parent, "cgroup.subtree_control").read_text()
        else:
            files = COMMON_V1 | V1_FILES[kind]
            if not self.memsw:
                files.pop("memory.memsw.limit_in_bytes", None)
            if kind == "cpuset" and Path(parent, "cgroup.clone_children").read_text() == "1":
                for name in ("cpuset.cpus", "cpuset.mems"):
                    files[name] = Path(parent, name).read_text()
        for name, content in files.items():
            Path(path, name).write_text(content)

    def mkdir(self, path: str) -> bool:
        created = super().mkdir(path)
        if created:
            self.populate(path, os.path.dirname(path))
        return created

    def rmdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, "gone", path)
        if any(e.is_dir() for e in os.scandir(path)) or Path(path, "cgroup.procs").read_text():
            raise OSError(errno.EBUSY, "busy", path)
        for entry in os.scandir(path):
            os.unlink(entry.path)
        os.rmdir(path)

    def write(self, path: str, value: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        self.writes.append((path, value))
        name = os.path.basename(path)
        handler = getattr(self, "_w_" + name.replace(".", "_"), None)
        if handler is not None:
            handler(Path(path), value)
        else:
            Path(path).write_text(value)

    def _w_cgroup_procs(self, path: Path, value: str) -> None:
        path.write_text(path.read_text() + value + "\n")

    def _w_cgroup_kill(self, path: Path, value: str) -> None:
        path.with_name("cgroup.procs").write_text("")

    def _w_cgroup_freeze(self, path: Path, value: str) -> None:
        path.write_text(value)
        path.with_name("cgroup.events").write_text(f"populated 0\nfrozen {value}\n")

    def _w_cgroup_subtree_control(self, path: Path, value: str) -> None:
        """Only what the parent delegates can be enabled; children get the files at once."""
        d = path.parent
        if str(d) in self.kinds:
            available = (d / "cgroup.controllers").read_text().split()
        else:
            available = (d.parent / "cgroup.subtree_control").read_text().split()
        have = set(path.read_text().split())
        for token in value.split():
            if token[1:] not in available:
                raise OSError(errno.ENOENT, "not available", str(path))
            have.add(token[1:])
        path.write_text(" ".join(sorted(have)))
        for child in (e for e in os.scandir(d) if e.is_dir()):
            for controller in have:
                for name, content in V2_FILES[controller].items():
                    if not Path(child.path, name).exists():
                        Path(child.path, name).write_text(content)

    def _w_memory_limit_in_bytes(self, path: Path, value: str) -> None:
        self._v1_memory(path, value, path.with_name("memory.memsw.limit_in_bytes"), lower=True)

    def _w_memory_memsw_limit_in_bytes(self, path: Path, value: str) -> None:
        self._v1_memory(path, value, path.with_name("memory.limit_in_bytes"), lower=False)

    def _v1_memory(self, path: Path, value: str, other: Path, *, lower: bool) -> None:
        """The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes."""
        new = int(V1_UNLIMITED) if value == "-1" else int(value)
        if other.exists():
            bound = int(other.read_text())
            if (lower and new > bound) or (not lower and new < bound):
                raise OSError(errno.EINVAL, "invalid argument", str(path))
        path.write_text(str(new))

    def attach_device_filter(self, path: str, program: bytes) -> None:
        self.attached.append((path, program))


@dataclass
class Host:
    root: Path
    mountinfo: Path
    fs: SimFs
    mounts: dict[str, str] = field(default_factory=dict)  # name -> mountpoint

    def open(self, path: str = "/playground/c1") -> HostCgroup:
        return open_cgroup(
            path, cgroup_root=str(self.root), mountinfo=str(self.mountinfo), fs=self.fs
        )

    def read(self, mount: str, rel: str) -> str:
        return Path(self.mounts[mount] + rel).read_text()

    def written(self, mount: str, rel: str) -> list[str]:
        target = self.mounts[mount] + rel
        return [value for path, value in self.fs.writes if path == target]


def _mountinfo_line(i: int, mountpoint: str, fstype: str, opts: str) -> str:
    return (
        f"{30 + i} 23 0:{40 + i} / {mountpoint} rw,relatime shared:{i} - {fstype} {fstype} {opts}"
    )


def make_host(tmp_path: Path, kind: str, *, memsw: bool = True, v2_controllers: str = "") -> Host:
    root = tmp_path / "cgroup"
    lines = [
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        f"23 22 0:20 / {root} rw - tmpfs tmpfs rw,mode=755",
        # Same fs type, outside the root: must be ignored.
        f"99 22 0:99 / {tmp_path}/elsewhere rw - cgroup cgroup rw,memory",
    ]
    kinds: dict[str, str] = {}
    mounts: dict[str, str] = {}
    if kind in ("v1", "hybrid"):
        for i, name in enumerate(V1_FILES):
            mp = f"{root}/{name}"
            kinds[mp], mounts[name] = name, mp
            lines.append(_mountinfo_line(i, mp, "cgroup", f"rw,{V1_OPTS[name]}"))
    if kind in ("v2", "hybrid"):
        mp = str(root) if kind == "v2" else f"{root}/unified"
        kinds[mp], mounts["unified"] = "v2", mp
        lines.append(_mountinfo_line(50, mp, "cgroup2", "rw,nsdelegate"))
    fs = SimFs(kinds, memsw=memsw)
    for name, mp in mounts.items():
        os.makedirs(mp, exist_ok=True)
        if name == "unified":
            for fname, content in V2_CORE.items():
                Path(mp, fname).write_text(content)
            Path(mp, "cgroup.controllers").write_text(v2_controllers)
        else:
            _root_v1(fs, mp, name)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("\n".join(lines) + "\n")
    return Host(root, mountinfo, fs, mounts)


def _root_v1(fs: SimFs, mountpoint: str, name: str) -> None:
    files = COMMON_V1 | V1_FILES[name]
    if name == "cpuset":
        files |= {"cpuset.cpus": "0-3\n", "cpuset.mems": "0\n"}
    for fname, content in files.items():
        if fname == "memory.memsw.limit_in_bytes" and not fs.memsw:
            continue
        Path(mountpoint, fname).write_text(content)


@pytest.fixture
def v1(tmp_path: Path) -> Host:
    return make_host(tmp_path, "v1")


@pytest.fixture
def v2(tmp_path: Path) -> Host:
    return make_host(tmp_path, "v2", v2_controllers=ALL_V2)


@pytest.fixture
def hybrid(tmp_path: Path) -> Host:
    return make_host(tmp_path, "hybrid", v2_controllers="hugetlb")


# -- probing ----------------------------------------------------------------------------------


def test_it_probes_each_layout(tmp_path: Path) -> None:
    for kind in ("v1", "v2", "hybrid"):
        host = make_host(tmp_path / kind, kind, v2_controllers="hugetlb")
        layout = probe_layout(cgroup_root=str(host.root), mountinfo=str(host.mountinfo))
        assert layout == CgroupLayout(kind)
        assert layout == kind


def test_it_reports_a_host_without_cgroups(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw - ext4 /dev/vda rw\n")
    with pytest.raises(CgroupError, match="no cgroup hierarchy"):
        probe_layout(cgroup_root=str(tmp_path), mountinfo=str(mountinfo))


def test_it_caches_the_probe_per_root_and_mountinfo(v1: Host) -> None:
    assert probe_layout(str(v1.root), str(v1.mountinfo)) == "v1"
    v1.mountinfo.write_text("")
    assert probe_layout(str(v1.root), str(v1.mountinfo)) == "v1"


def test_it_parses_comounted_controllers_and_escaped_mountpoints() -> None:
    text = (
        "31 23 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct,nsroot=/\n"
        "32 23 0:29 / /sys/fs/cgroup/odd\\040name rw shared:4 - cgroup cgroup rw,xattr,pids\n"
        "33 23 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "34 23 0:31 / /mnt/cg rw - cgroup2 cgroup2 rw\n"
    )
    assert parse_mountinfo(text, "/sys/fs/cgroup/") == parse_mountinfo(text, "/sys/fs/cgroup")
    v1_mounts, unified = parse_mountinfo(text, "/sys/fs/cgroup")
    assert v1_mounts == {
        "/sys/fs/cgroup/cpu,cpuacct": {"cpu", "cpuacct"},
        "/sys/fs/cgroup/odd name": {"pids"},
    }
    assert unified == "/sys/fs/cgroup/unified"


def test_it_puts_relative_paths_under_playground_and_refuses_the_root() -> None:
    assert normalize_path("abc") == "/playground/abc"
    assert normalize_path("/x//y/") == "/x/y"
    for bad in ("", "/", "//", "/a/../b", "./x"):
        with pytest.raises(CgroupError):
            normalize_path(bad)


# -- create -----------------------------------------------------------------------------------


def test_v1_create_makes_a_directory_in_every_hierarchy(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    mgr.create()  # idempotent
    for name in V1_FILES:
        assert Path(v1.mounts[name], "playground/c1").is_dir(), name
    assert not Path(v1.root, "elsewhere").exists()


def test_v1_create_copies_cpuset_from_the_parent(v1: Host) -> None:
    v1.open().create()
    assert v1.read("cpuset", "/playground/c1/cpuset.cpus") == "0-3"
    assert v1.read("cpuset", "/playground/c1/cpuset.mems") == "0"
    assert v1.read("cpuset", "/playground/cpuset.cpus") == "0-3"
    assert v1.read("cpuset", "/playground/cgroup.clone_children") == "1"
    # The next container inherits through clone_children: nothing is written for it.
    before = len(v1.fs.writes)
    v1.open("/playground/c2").create()
    assert v1.fs.writes[before:] == []
    assert v1.read("cpuset", "/playground/c2/cpuset.cpus") == "0-3"


def test_v2_create_enables_controllers_down_the_tree(v2: Host) -> None:
    v2.open().create()
    want = sorted(ALL_V2.split())
    assert sorted(v2.read("unified", "/cgroup.subtree_control").split()) == want
    assert sorted(v2.read("unified", "/playground/cgroup.subtree_control").split()) == want
    assert Path(v2.mounts["unified"], "playground/c1/memory.max").exists()
    # Second container: the parent already delegates everything, so only a read.
    before = len(v2.fs.writes)
    v2.open("/playground/c2").create()
    assert v2.fs.writes[before:] == []


def test_hybrid_create_also_makes_the_unified_directory(hybrid: Host) -> None:
    hybrid.open().create()
    assert Path(hybrid.mounts["unified"], "playground/c1").is_dir()
    assert Path(hybrid.mounts["systemd"], "playground/c1").is_dir()
    assert hybrid.read("unified", "/playground/cgroup.subtree_control") == "hugetlb"


# -- apply on v1 ------------------------------------------------------------------------------

FULL = {
    "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
    "pids": {"limit": 64},
    "blockIO": {"weight": 500},
}


def test_v1_apply_writes_each_controller(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    mgr.apply(FULL)
    leaf = "/playground/c1/"
    assert v1.read("memory", leaf + "memory.limit_in_bytes") == str(64 << 20)
    assert v1.read("memory", leaf + "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert v1.read("memory", leaf + "memory.soft_limit_in_bytes") == str(32 << 20)
    assert v1.read("cpu", leaf + "cpu.shares") == "512"
    assert v1.read("cpu", leaf + "cpu.cfs_quota_us") == "50000"
    assert v1.read("cpu", leaf + "cpu.cfs_period_us") == "100000"
    assert v1.read("cpuset", leaf + "cpuset.cpus") == "0-1"
    assert v1.read("pids", leaf + "pids.max") == "64"
    assert v1.read("blkio", leaf + "blkio.bfq.weight") == "500"


def test_v1_memory_limits_keep_memsw_above_limit_when_raising_and_lowering(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    leaf = "/playground/c1/"
    for limit, swap in ((100, 200), (300, 400), (50, 60), (50, -1)):
        mgr.apply({"memory": {"limit": limit, "swap": swap}})
        assert v1.read("memory", leaf + "memory.limit_in_bytes") == str(limit)
    assert v1.read("memory", leaf + "memory.memsw.limit_in_bytes") == V1_UNLIMITED


def test_v1_swap_without_memsw_is_an_error_but_a_plain_limit_is_not(tmp_path: Path) -> None:
    host = make_host(tmp_path, "v1", memsw=False)
    mgr = host.open()
    mgr.create()
    mgr.apply({"memory": {"limit": 1 << 20}})
    with pytest.raises(CgroupError, match=r"memory\.swap") as info:
        mgr.apply({"memory": {"limit": 1 << 20, "swap": 2 << 20}})
    assert info.value.path == "/playground/c1"


def test_v1_devices_deny_everything_then_apply_rules_in_order(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    mgr.apply(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": True, "type": "c", "major": 136, "access": "rwm"},
                {"allow": False, "type": "b", "major": 8, "minor": -1, "access": "m"},
            ]
        }
    )
    leaf = "/playground/c1/"
    assert v1.written("devices", leaf + "devices.deny") == ["a", "b 8:* m"]  # one deny-all
    assert v1.written("devices", leaf + "devices.allow") == ["c 1:3 rw", "c 136:* rwm"]


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"unified": {"memory.high": "1G"}}, "unified"),
        ({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}, "hugepageLimits"),
        ({"cpu": {"realtimeRuntime": 950000}}, "cpu.realtimeRuntime"),
        ({"memory": {"swap": 1 << 20}}, "memory.swap"),
        ({"memory": {"limit": 4 << 20, "swap": 2 << 20}}, "memory.swap"),
        ({"memory": {"limit": "1G"}}, "memory.limit"),
        ({"cpu": {"shares": 1}}, "cpu.shares"),
        ({"pids": {"limit": True}}, "pids.limit"),
        ({"network": {"classID": 7}}, "network.classID"),
        ({"devices": [{"allow": True, "type": "x"}]}, "devices[0].type"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, "devices[0].access"),
        ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "rdma"),
        ({"bogus": {}}, "bogus"),
        ({"memory": {"bogus": 1}}, "memory.bogus"),
    ],
)
def test_v1_rejects_what_it_cannot_do_naming_the_field(
    v1: Host, resources: dict[str, Any], field: str
) -> None:
    mgr = v1.open()
    mgr.create()
    before = len(v1.fs.writes)
    with pytest.raises(CgroupError) as info:
        mgr.apply(resources)
    assert info.value.reason.startswith(field), info.value.reason
    assert v1.fs.writes[before:] == []


def test_apply_validates_everything_before_writing(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    before = len(v1.fs.writes)
    with pytest.raises(CgroupError, match=r"cpu\.realtimePeriod"):
        mgr.apply({"memory": {"limit": 1 << 20}, "cpu": {"realtimePeriod": 1000}})
    assert v1.fs.writes[before:] == []


def test_nulls_and_zeros_mean_unset(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    before = len(v1.fs.writes)
    mgr.apply({"memory": {"limit": 0, "swap": None}, "cpu": {"shares": 0}, "devices": None})
    mgr.apply({"pids": {"limit": 0}, "hugepageLimits": [], "unified": {}})
    assert v1.fs.writes[before:] == []


# -- apply on v2 ------------------------------------------------------------------------------


def test_v2_apply_translates_v1_values(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.apply(FULL | {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    leaf = "/playground/c1/"
    assert v2.read("unified", leaf + "cpu.weight") == str(1 + (510 * 9999) // 262142)
    assert v2.read("unified", leaf + "cpu.max") == "50000 100000"
    assert v2.read("unified", leaf + "cpuset.cpus") == "0-1"
    assert v2.read("unified", leaf + "memory.max") == str(64 << 20)
    assert v2.read("unified", leaf + "memory.low") == str(32 << 20)
    assert v2.read("unified", leaf + "memory.swap.max") == str(64 << 20)  # swap - limit
    assert v2.read("unified", leaf + "pids.max") == "64"
    assert v2.read("unified", leaf + "io.weight") == str(io_weight(500))
    assert v2.read("unified", leaf + "hugetlb.2MB.max") == str(4 << 20)


def test_v2_weight_formulas_match_runc() -> None:
    assert cpu_weight(2) == 1
    assert cpu_weight(1024) == 39
    assert cpu_weight(262144) == 10000
    assert io_weight(10) == 1
    assert io_weight(1000) == 10000


@pytest.mark.parametrize(
    ("memory", "swap_max", "memory_max"),
    [
        ({"limit": 100, "swap": -1}, "max", "100"),
        ({"limit": 100, "swap": 100}, "0", "100"),
        ({"limit": -1, "swap": -1}, "max", "max"),
    ],
)
def test_v2_swap_is_memory_plus_swap_minus_memory(
    v2: Host, memory: dict[str, int], swap_max: str, memory_max: str
) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.apply({"memory": memory})
    assert v2.read("unified", "/playground/c1/memory.swap.max") == swap_max
    assert v2.read("unified", "/playground/c1/memory.max") == memory_max


def test_v2_quota_alone_and_unlimited_quota(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.apply({"cpu": {"quota": 20000}})
    assert v2.written("unified", "/playground/c1/cpu.max") == ["20000"]
    mgr.apply({"cpu": {"quota": -1, "period": 50000}})
    assert v2.written("unified", "/playground/c1/cpu.max")[-1] == "max 50000"


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpu": {"realtimeRuntime": 1}}, "cpu.realtimeRuntime"),
        ({"memory": {"swappiness": 10}}, "memory.swappiness"),
        ({"memory": {"disableOOMKiller": True}}, "memory.disableOOMKiller"),
        ({"unified": {"cgroup.procs": "1"}}, "unified.cgroup.procs"),
        ({"unified": {"../x": "1"}}, "unified.../x"),
        ({"hugepageLimits": [{"pageSize": "2 MB", "limit": 1}]}, "hugepageLimits[0].pageSize"),
    ],
)
def test_v2_rejects_what_it_cannot_do_naming_the_field(
    v2: Host, resources: dict[str, Any], field: str
) -> None:
    mgr = v2.open()
    mgr.create()
    with pytest.raises(CgroupError) as info:
        mgr.apply(resources)
    assert info.value.reason.startswith(field), info.value.reason


def test_v2_unified_values_are_written_as_given(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.apply({"unified": {"memory.max": "1G"}, "memory": {"limit": 1 << 20}})
    # unified comes last, so it wins over the translated value.
    assert v2.written("unified", "/playground/c1/memory.max") == [str(1 << 20), "1G"]


def test_v2_a_missing_controller_names_the_field(tmp_path: Path) -> None:
    host = make_host(tmp_path, "v2", v2_controllers="cpu pids")
    mgr = host.open()
    mgr.create()
    with pytest.raises(CgroupError) as info:
        mgr.apply({"memory": {"limit": 1 << 20}})
    assert info.value.reason.startswith("memory: no memory controller")
    mgr.apply({"pids": {"limit": -1}})
    assert host.read("unified", "/playground/c1/pids.max") == "max"


def test_v2_devices_attach_an_ebpf_program(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1}]
    mgr.apply({"devices": rules})
    [(path, program)] = v2.fs.attached
    assert path == v2.mounts["unified"] + "/playground/c1"
    assert program == bpf.build_program(bpf.parse_rules(rules, "t"))


# -- hybrid -----------------------------------------------------------------------------------


def test_hybrid_routes_each_controller_to_where_it_lives(hybrid: Host) -> None:
    mgr = hybrid.open()
    mgr.create()
    mgr.apply(
        {
            "memory": {"limit": 1 << 20},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}],
            "unified": {"hugetlb.2MB.max": "4194304"},
            "devices": [{"allow": False, "access": "rwm"}],
        }
    )
    assert hybrid.read("memory", "/playground/c1/memory.limit_in_bytes") == str(1 << 20)
    assert hybrid.written("unified", "/playground/c1/hugetlb.2MB.max") == [str(2 << 20), "4194304"]
    assert hybrid.written("devices", "/playground/c1/devices.deny") == ["a"]
    assert hybrid.fs.attached == []


def test_hybrid_add_pid_joins_every_hierarchy(hybrid: Host) -> None:
    mgr = hybrid.open()
    mgr.create()
    mgr.add_pid(4242)
    for name in [*V1_FILES, "unified"]:
        assert hybrid.read(name, "/playground/c1/cgroup.procs") == "4242\n", name
    assert mgr.pids() == [4242]


# -- freeze, kill, destroy --------------------------------------------------------------------


def test_v1_freeze_waits_for_frozen_and_thaw_writes_thawed(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    mgr.freeze()
    assert v1.read("freezer", "/playground/c1/freezer.state") == "FROZEN"
    mgr.thaw()
    assert v1.written("freezer", "/playground/c1/freezer.state") == ["FROZEN", "THAWED"]


def test_v1_freeze_times_out_when_tasks_never_freeze(
    v1: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.oci.cgroups import v1 as v1_module

    monkeypatch.setattr(v1_module, "FREEZE_TIMEOUT", 0.01)
    mgr = v1.open()
    mgr.create()
    stuck = lambda p, v: p.write_text("FREEZING")  # noqa: E731
    monkeypatch.setattr(v1.fs, "_w_freezer_state", stuck, raising=False)
    with pytest.raises(CgroupError, match="freezer: timed out"):
        mgr.freeze()


def test_v2_freeze_uses_cgroup_freeze(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.freeze()
    mgr.thaw()
    assert v2.written("unified", "/playground/c1/cgroup.freeze") == ["1", "0"]


def test_v2_kill_all_uses_cgroup_kill(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    mgr.add_pid(999999)
    mgr.kill_all()
    assert v2.written("unified", "/playground/c1/cgroup.kill") == ["1"]
    assert mgr.pids() == []


def test_v1_kill_all_freezes_signals_and_thaws(v1: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    mgr = v1.open()
    mgr.create()
    mgr.add_pid(4242)
    mgr.kill_all(signal.SIGTERM)
    assert sent == [(4242, signal.SIGTERM)]
    assert v1.written("freezer", "/playground/c1/freezer.state") == ["FROZEN", "THAWED"]


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
def test_destroy_removes_every_directory_and_is_idempotent(tmp_path: Path, kind: str) -> None:
    host = make_host(tmp_path, kind, v2_controllers="hugetlb pids")
    mgr = host.open()
    mgr.destroy()  # never created: fine
    mgr.create()
    dirs = [d.path for d in mgr.dirs()]
    assert dirs and all(os.path.isdir(d) for d in dirs)
    mgr.destroy()
    assert not any(os.path.exists(d) for d in dirs)
    assert all(os.path.isdir(os.path.dirname(d)) for d in dirs)  # /playground stays
    mgr.destroy()


def test_destroy_removes_nested_cgroups_and_kills_stragglers(
    v2: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []

    def fake_kill(pid: int, sig: int) -> None:
        sent.append(pid)
        Path(v2.mounts["unified"], "playground/c1/inner/cgroup.procs").write_text("")

    monkeypatch.setattr(os, "kill", fake_kill)
    mgr = v2.open()
    mgr.create()
    v2.fs.mkdir(v2.mounts["unified"] + "/playground/c1/inner")
    Path(v2.mounts["unified"], "playground/c1/inner/cgroup.procs").write_text("77\n")
    mgr.destroy()
    assert sent == [77]
    assert not Path(v2.mounts["unified"], "playground/c1").exists()


# -- stats ------------------------------------------------------------------------------------


def test_v1_stats_read_the_v1_files(v1: Host) -> None:
    mgr = v1.open()
    mgr.create()
    leaf = "/playground/c1/"
    Path(v1.mounts["cpuacct"] + leaf + "cpuacct.usage").write_text("12345\n")
    Path(v1.mounts["memory"] + leaf + "memory.usage_in_bytes").write_text("4096\n")
    Path(v1.mounts["memory"] + leaf + "memory.max_usage_in_bytes").write_text("8192\n")
    Path(v1.mounts["memory"] + leaf + "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    )
    Path(v1.mounts["pids"] + leaf + "pids.current").write_text("2\n")
    stats = mgr.stats()
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.memory_max_usage) == (12345, 4096, 8192)
    assert stats.memory_limit is None
    assert (stats.pids_current, stats.pids_limit, stats.oom_kill_count) == (2, None, 3)
    mgr.apply({"memory": {"limit": 1 << 20}, "pids": {"limit": 5}})
    stats = mgr.stats()
    assert (stats.memory_limit, stats.pids_limit) == (1 << 20, 5)
    assert mgr.oom_killed() == 3


def test_v2_stats_read_the_v2_files(v2: Host) -> None:
    mgr = v2.open()
    mgr.create()
    leaf = v2.mounts["unified"] + "/playground/c1/"
    Path(leaf + "cpu.stat").write_text("usage_usec 7\nuser_usec 5\nsystem_usec 2\n")
    Path(leaf + "memory.current").write_text("100\n")
    Path(leaf + "memory.peak").write_text("200\n")
    Path(leaf + "memory.events").write_text("low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n")
    mgr.apply({"memory": {"limit": 1000}, "pids": {"limit": 9}})
    stats = mgr.stats()
    assert stats.cpu_usage_ns == 7000
    assert (stats.memory_usage, stats.memory_limit, stats.memory_max_usage) == (100, 1000, 200)
    assert (stats.pids_limit, stats.oom_kill_count) == (9, 1)


def test_stats_of_a_destroyed_cgroup_are_zero(v1: Host) -> None:
    stats = v1.open().stats()
    assert (stats.cpu_usage_ns, stats.memory_usage, stats.pids_current) == (0, 0, 0)


# -- the eBPF device filter -------------------------------------------------------------------


def run_filter(program: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """Interpret the eBPF subset build_program emits, against one bpf_cgroup_dev_ctx."""
    dev = {"c": bpf.DEV_CHAR, "b": bpf.DEV_BLOCK}[kind]
    acc = sum({"r": bpf.ACC_READ, "w": bpf.ACC_WRITE, "m": bpf.ACC_MKNOD}[c] for c in access)
    ctx = struct.pack("<III", (acc << 16) | dev, major, minor)
    regs = [0] * 11
    ops: dict[int, Callable[[int, int, int], bool]] = {
        bpf.OP_JEQ_K: lambda d, s, imm: regs[d] == imm,
        bpf.OP_JNE_K: lambda d, s, imm: regs[d] != imm,
        bpf.OP_JNE_X: lambda d, s, imm: regs[d] != regs[s],
    }
    pc = 0
    for _ in range(len(program) // 8 + 1):  # no loops: each instruction runs at most once
        code, reg, off, imm = struct.unpack_from("<BBhi", program, pc * 8)
        dst, src = reg & 0xF, reg >> 4
        pc += 1
        if code == bpf.OP_LDXW:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == bpf.OP_AND32_K:
            regs[dst] &= imm & 0xFFFFFFFF
        elif code == bpf.OP_RSH32_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == bpf.OP_MOV32_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == bpf.OP_MOV32_K:
            regs[dst] = imm & 0xFFFFFFFF
        elif code == bpf.OP_EXIT:
            return regs[0]
        else:
            assert off > 0, "jumps only go forward"
            pc += off if ops[code](dst, src, imm) else 0
    raise AssertionError("program ran off its end")


def _program(*rules: dict[str, Any]) -> bytes:
    return bpf.build_program(bpf.parse_rules(list(rules), "t"))


DENY_ALL = {"allow": False, "access": "rwm"}


def test_device_filter_is_an_allowlist() -> None:
    prog = _program(
        DENY_ALL,
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rw"},
        {"allow": True, "type": "b", "minor": 0, "access": "r"},
    )
    assert run_filter(prog, "c", 1, 3, "rw") == 1
    assert run_filter(prog, "c", 1, 3, "m") == 1
    assert run_filter(prog, "b", 1, 3, "r") == 0
    assert run_filter(prog, "c", 1, 5, "r") == 0
    assert run_filter(prog, "c", 136, 7, "rw") == 1
    assert run_filter(prog, "c", 136, 7, "m") == 0
    assert run_filter(prog, "b", 8, 0, "r") == 1
    assert run_filter(prog, "b", 8, 0, "rw") == 0


def test_device_filter_later_rules_win_and_denies_narrow() -> None:
    prog = _program(
        {"allow": True, "type": "c", "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
    )
    assert run_filter(prog, "c", 1, 5, "r") == 1
    assert run_filter(prog, "c", 1, 5, "rw") == 0  # any overlap with a deny denies
    assert run_filter(prog, "b", 1, 5, "r") == 0  # default deny


def test_device_filter_type_a_resets_and_drops_what_came_before() -> None:
    allow_all = _program(DENY_ALL, {"allow": True, "type": "c", "major": 1}, {"allow": True})
    assert allow_all == _program({"allow": True})
    assert run_filter(allow_all, "b", 8, 1, "rwm") == 1
    prog = _program({"allow": True}, {"allow": False, "type": "b", "access": "rwm"})
    assert run_filter(prog, "b", 8, 1, "r") == 0
    assert run_filter(prog, "c", 4, 1, "rw") == 1
    assert run_filter(_program(), "c", 1, 3, "r") == 0


# -- the fake ---------------------------------------------------------------------------------


def test_fake_cgroup_records_and_fails_on_request() -> None:
    fake: CgroupManager = FakeCgroup("abc")
    assert fake.path == "/playground/abc"
    fake.create()
    fake.apply({"memory": {"limit": 100}, "pids": {"limit": 3}})
    fake.add_pid(5)
    assert fake.pids() == [5]
    assert fake.stats().memory_limit == 100
    fake.kill_all()
    fake.destroy()
    fake.destroy()
    with pytest.raises(CgroupError, match="apply: injected"):
        FakeCgroup("x", fail_on=frozenset({"apply"})).apply({})


def test_host_cgroup_satisfies_the_protocol(v1: Host) -> None:
    mgr: CgroupManager = v1.open()
    assert mgr.path == "/playground/c1"
