"""Attacks on resources: each stops at a limit of the default profile, inside the container,
while a probe on the host (fork+exec of `true`, a small computation) shows bounded latency."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime.profile import DEFAULT_PROFILE
from tests.security.attack import (
    Attacker,
    Background,
    Responsiveness,
    ns_inode,
    processes_in_pid_ns,
    watch_host,
)

pytestmark = pytest.mark.root

MIB = 1024 * 1024
PROFILE = DEFAULT_PROFILE
assert PROFILE.memory and PROFILE.cpus and PROFILE.rootfs_size  # the limits under test


def _int(got: dict[str, str], key: str) -> int:
    return int(got[key])


def _attack_while_watching(
    attacker: Attacker, script: str, seconds: float
) -> tuple[str, Responsiveness]:
    """Start ``script`` detached, let it run for a moment, watch the host for ``seconds``."""
    cid = attacker.start(script)
    time.sleep(1.0)
    return cid, watch_host(seconds)


# --- processes ---------------------------------------------------------------------------------


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_host_stays_responsive(
    attacker: Attacker,
) -> None:
    cid, host = _attack_while_watching(attacker, "bomb() { bomb | bomb & }; bomb; sleep 600", 5)
    try:
        pids = attacker.cgroup_dir("pids", cid)
        current = int((pids / "pids.current").read_text())
        events = (pids / "pids.events").read_text().split()
        init_pid = int(attacker.inspect(cid)["State"]["Pid"])  # type: ignore[index]
        pidns = ns_inode(init_pid)
    finally:
        attacker.remove(cid)
    host.assert_bounded()
    assert current <= PROFILE.pids_limit
    assert int(events[events.index("max") + 1]) > 0  # the limit was hit, and held
    assert pidns is not None and processes_in_pid_ns(pidns) == []  # all gone after removal


def test_a_thread_bomb_stops_at_the_pids_limit(attacker: Attacker) -> None:
    watch = Background(watch_host, 3.0)
    outcome = attacker.run("/probe/probe threads 1000000")
    host: Responsiveness = watch.result()  # type: ignore[assignment]
    got = outcome.values
    assert _int(got, "threads") < PROFILE.pids_limit, str(outcome)
    assert got["error"] == "EAGAIN"
    host.assert_bounded()


# --- memory ------------------------------------------------------------------------------------


def test_a_memory_bomb_is_oom_killed_inside_the_container(attacker: Attacker) -> None:
    watch = Background(watch_host, 3.0)
    cid = attacker.start("exec /probe/probe memory 16384")
    try:
        code = attacker.wait(cid)
        state = attacker.inspect(cid)["State"]
        outcome = attacker.logs(cid)
    finally:
        attacker.remove(cid)
    host: Responsiveness = watch.result()  # type: ignore[assignment]
    assert code == 137, str(outcome)
    assert state["OOMKilled"] is True  # type: ignore[index]
    assert "survived" not in outcome.values
    assert _int(outcome.values, "allocated_mib") * MIB <= PROFILE.memory  # type: ignore[operator]
    host.assert_bounded()


def test_swap_adds_nothing_to_the_memory_limit(attacker: Attacker) -> None:
    outcome = attacker.run(
        "cd /sys/fs/cgroup/memory; echo mem=$(cat memory.limit_in_bytes);"
        " echo memsw=$(cat memory.memsw.limit_in_bytes)"
    )
    got = outcome.values
    assert _int(got, "mem") == PROFILE.memory, str(outcome)
    assert _int(got, "memsw") == PROFILE.memory, str(outcome)


# --- file systems ------------------------------------------------------------------------------

FILLS = r"""
echo shm_dd="$(dd if=/dev/zero of=/dev/shm/fill bs=1M count=100000 2>&1 | grep -c 'No space left')"
echo shm_kib=$(du -k /dev/shm/fill | cut -f1)
rm /dev/shm/fill
mkdir /dev/shm/inodes && /probe/probe files /dev/shm/inodes 1000000 | sed 's/^/shm_/'
echo dev_dd="$(dd if=/dev/zero of=/dev/fill bs=1k count=100000 2>&1 | grep -c 'No space left')"
echo dev_kib=$(du -k /dev/fill | cut -f1)
echo tmp_fs="$(stat -f -c '%T %b %S' /tmp)"
echo root_fs="$(stat -f -c '%T %b %S' /)"
/probe/probe fds | sed 's/^/fds_/'
/probe/probe ptys 100000 | sed 's/^/pty_/'
echo core=$(ulimit -c)
echo oom_score_adj=$(cat /proc/self/oom_score_adj)
(echo -1000 > /proc/self/oom_score_adj) 2>/dev/null && echo oom_lower=OK || echo oom_lower=DENIED
echo done=1
"""


@pytest.fixture(scope="module")
def fills(attacker: Attacker) -> dict[str, str]:
    outcome = attacker.run(FILLS)
    assert outcome.values.get("done") == "1", str(outcome)
    return outcome.values


def test_filling_dev_shm_stops_at_its_size(fills: dict[str, str]) -> None:
    assert fills["shm_dd"] == "1"
    assert _int(fills, "shm_kib") * 1024 <= PROFILE.shm_size


def test_filling_dev_shm_with_files_stops_at_its_inodes(fills: dict[str, str]) -> None:
    assert fills["shm_error"] == "ENOSPC"
    assert _int(fills, "shm_files") <= PROFILE.shm_inodes


def test_filling_dev_stops_at_64_kib(fills: dict[str, str]) -> None:
    assert fills["dev_dd"] == "1"
    assert _int(fills, "dev_kib") * 1024 <= PROFILE.dev_size


def test_tmp_is_part_of_the_limited_writable_layer(fills: dict[str, str]) -> None:
    _fstype, blocks, size = fills["tmp_fs"].split()
    assert fills["tmp_fs"] == fills["root_fs"]
    assert int(blocks) * int(size) <= PROFILE.rootfs_size  # type: ignore[operator]


def test_descriptor_exhaustion_stops_at_nofile(fills: dict[str, str]) -> None:
    assert fills["fds_error"] == "EMFILE"
    assert _int(fills, "fds_fds") < PROFILE.nofile
    assert fills["fds_raise"] == "EPERM"


def test_pty_exhaustion_stops_at_the_containers_pty_limit(fills: dict[str, str]) -> None:
    # Every devpts but the host's shares kernel.pty.max - kernel.pty.reserve ptys: without a
    # per-container limit one container could take them all from the others.
    assert fills["pty_error"] == "ENOSPC"
    assert _int(fills, "pty_ptys") <= PROFILE.ptys
    with open("/proc/sys/kernel/pty/max") as f:
        assert PROFILE.ptys * 4 < int(f.read())


def test_no_core_dumps_and_the_oom_killer_prefers_the_container(fills: dict[str, str]) -> None:
    assert fills["core"] == str(PROFILE.core) == "0"
    assert fills["oom_score_adj"] == str(PROFILE.oom_score_adj)
    assert fills["oom_lower"] == "DENIED"


def _writable_image(attacker: Attacker, cid: str) -> Path:
    return attacker.engine.root / "containers" / cid / "writable.img"


def test_a_disk_fill_stops_at_the_writable_layer_quota(attacker: Attacker) -> None:
    # fallocate most of it (instant, and sparse on the host), then dd the rest, then /etc/hosts,
    # which Docker keeps on the host's disk: all stop at the container's own quota.
    script = (
        "fallocate -l $(( $(stat -f -c '%a*%S' /) - 64*1024*1024 )) /big;"
        " echo dd=$(dd if=/dev/zero of=/fill bs=1M 2>&1 | grep -c 'No space left');"
        " echo hosts=$( (dd if=/dev/zero bs=1M count=64 >> /etc/hosts) 2>&1 | grep -c 'No space');"
        " echo avail=$(stat -f -c %a /); sleep 600"
    )
    cid = attacker.start(script)
    try:
        deadline = time.monotonic() + 60
        while "avail=" not in (outcome := attacker.logs(cid)).out:
            assert time.monotonic() < deadline, str(outcome)
            time.sleep(0.5)
        image = _writable_image(attacker, cid)
        allocated = os.stat(image).st_blocks * 512
    finally:
        attacker.remove(cid)
    got = outcome.values
    assert got["dd"] == "1" and got["hosts"] == "1", str(outcome)
    assert int(got["avail"]) * 4096 < 16 * MIB  # ext4 keeps a few blocks for itself
    assert allocated <= PROFILE.rootfs_size  # type: ignore[operator]
    assert not image.exists()  # removing the container gives the space back


def test_a_volume_the_container_makes_fills_up_at_its_own_quota(attacker: Attacker) -> None:
    # `-v name:/data` of a volume that does not exist creates it: with the profile's size.
    size = PROFILE.volume_size
    assert size is not None
    script = (
        "echo total=$(stat -f -c '%b*%S' /data | sed 's/*/ /' | (read b s; echo $((b*s))));"
        f" echo big=$( (fallocate -l {size} /data/big) 2>&1 | grep -c 'No space');"
        " echo dd=$(dd if=/dev/zero of=/data/fill bs=1M 2>&1 | grep -c 'No space left')"
    )
    try:
        outcome = attacker.run(script, "-v", "made-by-run:/data", timeout=180)
    finally:
        attacker.engine.cli("volume", "rm", "-f", "made-by-run")
    got = outcome.values
    assert got.get("big") == "1" and got.get("dd") == "1", str(outcome)
    assert 0 < int(got["total"]) <= size


def test_an_inode_fill_stops_at_the_writable_layer_quota(attacker: Attacker) -> None:
    outcome = attacker.run("mkdir /inodes && exec /probe/probe files /inodes 10000000", timeout=180)
    got = outcome.values
    assert got["error"] == "ENOSPC", str(outcome)
    assert _int(got, "files") < PROFILE.rootfs_inodes


# --- CPU and output ----------------------------------------------------------------------------


def test_a_cpu_hog_gets_its_quota_and_the_host_stays_responsive(attacker: Attacker) -> None:
    hog = "for i in 1 2 3 4; do (while :; do :; done) & done; sleep 600"
    cid = attacker.start(hog)
    try:
        time.sleep(1.0)
        usage = attacker.cgroup_dir("cpuacct", cid) / "cpuacct.usage"
        before, started = int(usage.read_text()), time.monotonic()
        host = watch_host(4.0)
        used = (int(usage.read_text()) - before) / 1e9
        elapsed = time.monotonic() - started
    finally:
        attacker.remove(cid)
    assert used / elapsed <= PROFILE.cpus * 1.15, (used, elapsed)  # type: ignore[operator]
    host.assert_bounded()


def test_an_output_flood_keeps_the_daemon_responsive_and_its_log_bounded(
    attacker: Attacker,
) -> None:
    from runtime.supervisor.session import LOG_LIMIT

    cid = attacker.start("yes 'all work and no play makes a dull container'")
    try:
        time.sleep(1.0)
        watch = Background(watch_host, 5.0)
        latencies = []
        for _ in range(4):
            started = time.monotonic()
            listed = attacker.engine.cli("ps", "-q")
            latencies.append(time.monotonic() - started)
            assert listed.returncode == 0
            time.sleep(0.5)
        host: Responsiveness = watch.result()  # type: ignore[assignment]
        folder = attacker.engine.root / "containers" / cid
        logged = sum(p.stat().st_size for p in folder.glob("container.log*"))
    finally:
        attacker.remove(cid)
    assert max(latencies) < 5.0, latencies  # a CLI round trip, Python start-up included
    assert logged <= 2 * LOG_LIMIT + 4 * MIB
    host.assert_bounded()
