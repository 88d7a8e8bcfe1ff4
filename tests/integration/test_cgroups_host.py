"""runtime.oci.cgroups on this machine's real cgroupfs (hybrid here; v2 elsewhere).

Each test gets a cgroup under a unique top-level path, and the fixture removes it and asserts
that no directory is left in any hierarchy, even when the test fails. The pure-v2 code path
(cgroup.kill, cgroup.freeze, the eBPF device filter) is exercised on a private cgroup2 mount,
which probes as a v2 host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import linux
from runtime.oci.cgroups import HostCgroup, open_cgroup, probe_layout

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup"), reason="no cgroupfs"),
]


class Spawner:
    """Starts commands that block until they are inside the cgroup, and reaps them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, mgr: HostCgroup, *cmd: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["sh", "-c", 'read _; exec "$@"', "sh", *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        mgr.add_pid(proc.pid)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
        proc.stdin = None  # so communicate() does not flush a closed pipe
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


def _cleanup(mgr: HostCgroup, spawner: Spawner) -> None:
    dirs = [d.path for d in mgr.dirs()]
    try:
        mgr.destroy()
    finally:
        spawner.cleanup()
        for d in dirs:
            if os.path.isdir(d):
                for sub in sorted(Path(d).glob("**/"), reverse=True):
                    os.rmdir(sub)
    left = [d for d in dirs if os.path.exists(d)]
    assert left == [], f"cgroup directories left behind: {left}"


@pytest.fixture
def spawner() -> Iterator[Spawner]:
    s = Spawner()
    yield s
    s.cleanup()


@pytest.fixture
def cgroup(spawner: Spawner) -> Iterator[HostCgroup]:
    mgr = open_cgroup(f"/pgtest-{uuid.uuid4().hex[:12]}")
    mgr.create()
    try:
        yield mgr
    finally:
        _cleanup(mgr, spawner)


@pytest.fixture
def v2_cgroup(tmp_path: Path, spawner: Spawner) -> Iterator[HostCgroup]:
    """A cgroup on a private mount of this host's cgroup2 hierarchy, probed as pure v2."""
    root = tmp_path / "cg2"
    root.mkdir()
    linux.mount("cgroup2", str(root), "cgroup2")
    try:
        assert probe_layout(cgroup_root=str(root)) == "v2"
        mgr = open_cgroup(f"/pgtest-{uuid.uuid4().hex[:12]}", cgroup_root=str(root))
        mgr.create()
        try:
            yield mgr
        finally:
            _cleanup(mgr, spawner)
    finally:
        linux.umount(str(root), linux.MNT_DETACH)


def test_it_limits_tracks_and_removes_a_process(cgroup: HostCgroup, spawner: Spawner) -> None:
    cgroup.apply({"memory": {"limit": 64 << 20}, "pids": {"limit": 16}})
    proc = spawner.start(cgroup, "sleep", "60")
    assert cgroup.pids() == [proc.pid]
    membership = Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
    assert all(line.endswith(":" + cgroup.path) for line in membership), membership
    stats = cgroup.stats()
    assert stats.memory_limit == 64 << 20
    assert (stats.pids_current, stats.pids_limit) == (1, 16)
    dirs = [d.path for d in cgroup.dirs()]
    cgroup.kill_all()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    cgroup.destroy()
    assert [d for d in dirs if os.path.exists(d)] == []
    cgroup.destroy()  # already gone: success


def test_destroy_kills_and_removes_without_waiting_for_the_reaper(
    cgroup: HostCgroup, spawner: Spawner
) -> None:
    proc = spawner.start(cgroup, "sleep", "60")
    for d in cgroup.dirs():
        os.mkdir(d.path + "/inner")  # as a nested runtime inside the container would
    started = time.monotonic()
    cgroup.destroy()
    assert time.monotonic() - started < 2
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not any(os.path.exists(d.path) for d in cgroup.dirs())


def test_it_counts_cpu_and_memory_of_its_processes(cgroup: HostCgroup, spawner: Spawner) -> None:
    busy = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; x=$(seq 1 20000); sleep 60"
    spawner.start(cgroup, "sh", "-c", busy)
    deadline = time.monotonic() + 10
    while cgroup.stats().cpu_usage_ns == 0 or cgroup.stats().memory_usage == 0:
        assert time.monotonic() < deadline, cgroup.stats()
        time.sleep(0.05)


def test_the_pids_limit_stops_forks(cgroup: HostCgroup, spawner: Spawner) -> None:
    cgroup.apply({"pids": {"limit": 2}})
    proc = spawner.start(cgroup, "sh", "-c", "for i in 1 2 3 4; do sleep 0.2 & done; wait")
    _, err = proc.communicate(timeout=20)
    assert "fork" in err.lower() or "resource temporarily unavailable" in err.lower(), err


def test_an_oom_kill_is_counted(cgroup: HostCgroup, spawner: Spawner) -> None:
    cgroup.apply({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    hog = "b = bytearray(256 << 20); b[::4096] = b'x' * len(b[::4096])"
    proc = spawner.start(cgroup, sys.executable, "-c", hog)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert cgroup.oom_killed() >= 1
    assert cgroup.stats().oom_kill_count >= 1


def test_freeze_thaw_and_a_gentle_kill(cgroup: HostCgroup, spawner: Spawner) -> None:
    proc = spawner.start(cgroup, "sleep", "60")
    cgroup.freeze()
    freezer = [d for d in cgroup.dirs() if "/freezer/" in d.path]
    if freezer:
        assert Path(freezer[0].path, "freezer.state").read_text().strip() == "FROZEN"
    cgroup.thaw()
    cgroup.kill_all(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM


DEVICE_PROBE = "(: </dev/null) && echo null-ok; (: </dev/zero) 2>/dev/null || echo zero-denied"
NULL_ONLY = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
]


def test_device_rules_are_enforced(cgroup: HostCgroup, spawner: Spawner) -> None:
    cgroup.apply({"devices": NULL_ONLY})
    out, _ = spawner.start(cgroup, "sh", "-c", DEVICE_PROBE).communicate(timeout=10)
    assert out.split() == ["null-ok", "zero-denied"]


def test_hugetlb_limits_go_where_hugetlb_lives(cgroup: HostCgroup) -> None:
    where = [d for d in cgroup.dirs() if Path(d.path, "hugetlb.2MB.max").exists()]
    where += [d for d in cgroup.dirs() if Path(d.path, "hugetlb.2MB.limit_in_bytes").exists()]
    if not where:
        pytest.skip("no hugetlb controller with 2MB pages on this host")
    cgroup.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    name = (
        "hugetlb.2MB.max"
        if Path(where[0].path, "hugetlb.2MB.max").exists()
        else ("hugetlb.2MB.limit_in_bytes")
    )
    assert Path(where[0].path, name).read_text().strip() == str(4 << 20)


def test_v2_devices_use_an_ebpf_filter(v2_cgroup: HostCgroup, spawner: Spawner) -> None:
    v2_cgroup.apply({"devices": NULL_ONLY})
    out, _ = spawner.start(v2_cgroup, "sh", "-c", DEVICE_PROBE).communicate(timeout=10)
    assert out.split() == ["null-ok", "zero-denied"]
    # Applying again replaces the program instead of stacking another one.
    v2_cgroup.apply({"devices": [{"allow": True}]})
    out, _ = spawner.start(v2_cgroup, "sh", "-c", DEVICE_PROBE).communicate(timeout=10)
    assert out.split() == ["null-ok"]
    from runtime.oci.cgroups import devices_bpf

    fd = os.open(v2_cgroup.dirs()[0].path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(linux.bpf_prog_query(fd, devices_bpf.BPF_CGROUP_DEVICE)) == 1
    finally:
        os.close(fd)


def test_v2_freeze_and_cgroup_kill(v2_cgroup: HostCgroup, spawner: Spawner) -> None:
    proc = spawner.start(v2_cgroup, "sleep", "60")
    assert v2_cgroup.pids() == [proc.pid]
    v2_cgroup.freeze()
    events = Path(v2_cgroup.dirs()[0].path, "cgroup.events").read_text()
    assert "frozen 1" in events
    v2_cgroup.thaw()
    v2_cgroup.kill_all()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert v2_cgroup.stats().cpu_usage_ns >= 0


@pytest.mark.parametrize(
    "rules",
    [
        [],
        [{"allow": True}],
        NULL_ONLY,
        [
            {"allow": True, "type": "c", "access": "rwm"},
            {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
            {"allow": True, "type": "b", "major": 8, "access": "r"},
            {"allow": False, "type": "b", "minor": 0, "access": "rwm"},
            {"allow": True, "type": "c", "major": 4095, "minor": 1048575, "access": "m"},
        ],
    ],
)
def test_the_kernel_verifier_accepts_generated_device_filters(
    rules: list[dict[str, object]],
) -> None:
    from runtime.oci.cgroups import devices_bpf

    program = devices_bpf.build_program(devices_bpf.parse_rules(rules, "t"))
    fd = linux.bpf_prog_load(devices_bpf.BPF_PROG_TYPE_CGROUP_DEVICE, program, "Apache")
    os.close(fd)
