"""Attacks through /proc, /sys, cgroupfs and /dev, from a root shell in a default-profile
container; and hostile images whose /proc, /dev, /sys or /etc/hosts are symlinks.

Every write is a write-back of the value just read, so that an attack that got through would
change nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.attack import Attacker, mount_points

pytestmark = pytest.mark.root

MASKED_FILES = (
    "kcore", "keys", "timer_list", "timer_stats", "sched_debug", "latency_stats", "interrupts",
    "slabinfo", "vmallocinfo", "pagetypeinfo",
)  # fmt: skip
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware")
STANDARD_DEV = (
    "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
    "tty", "urandom", "zero",
)  # fmt: skip

SCRIPT = r"""
wb() {  # write back what a file holds: harmless if the write were allowed
  v=$(cat "$2" 2>/dev/null)
  if (printf '%s\n' "$v" > "$2") 2>/dev/null; then echo "$1=WRITTEN"; else echo "$1=DENIED"; fi
}
umount /proc/keys 2>/dev/null && echo umount_mask=OK || echo umount_mask=DENIED
umount -l /proc/sys 2>/dev/null && echo umount_proc_sys=OK || echo umount_proc_sys=DENIED
umount -l /sys/fs/cgroup 2>/dev/null && echo umount_cgroup=OK || echo umount_cgroup=DENIED
for f in MASKED_FILES; do
  if [ -e /proc/$f ]; then echo masked_$f=$(cat /proc/$f 2>/dev/null | wc -c)
  else echo masked_$f=ABSENT; fi
done
for d in MASKED_DIRS; do echo "entries_$(basename $d)=$(ls -A $d 2>/dev/null | wc -l)"; done
wb core_pattern /proc/sys/kernel/core_pattern
wb modprobe /proc/sys/kernel/modprobe
wb randomize_va_space /proc/sys/kernel/randomize_va_space
wb overcommit /proc/sys/vm/overcommit_memory
wb ip_forward /proc/sys/net/ipv4/ip_forward
wb binfmt_register /proc/sys/fs/binfmt_misc/register
echo binfmt_entries=$(ls -A /proc/sys/fs/binfmt_misc 2>/dev/null | wc -l)
(echo h > /proc/sysrq-trigger) 2>/dev/null && echo sysrq=WRITTEN || echo sysrq=DENIED
wb rcu_expedited /sys/kernel/rcu_expedited
wb profiling /sys/kernel/profiling
wb uevent_helper /sys/kernel/uevent_helper
echo kernel_fs_entries=$(find /sys/kernel/debug /sys/kernel/tracing /sys/kernel/security \
  -mindepth 1 2>/dev/null | wc -l)
echo kallsyms_addresses=$(cut -d' ' -f1 /proc/kallsyms | sort -u | tr '\n' ,)
wb cg_memory_limit /sys/fs/cgroup/memory/memory.limit_in_bytes
wb cg_memsw_limit /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes
wb cg_pids_max /sys/fs/cgroup/pids/pids.max
wb cg_cpu_quota /sys/fs/cgroup/cpu/cpu.cfs_quota_us
wb cg_notify /sys/fs/cgroup/memory/notify_on_release
wb cg_devices_allow /sys/fs/cgroup/devices/devices.allow
wb cg_unified_procs /sys/fs/cgroup/unified/cgroup.procs
(echo $$ > /sys/fs/cgroup/pids/cgroup.procs) 2>/dev/null && echo cg_procs=WRITTEN \
  || echo cg_procs=DENIED
echo release_agents=$(find /sys/fs/cgroup -name release_agent 2>/dev/null | wc -l)
for f in $(find /sys/fs/cgroup -name release_agent 2>/dev/null); do wb release_agent $f; done
mkdir /sys/fs/cgroup/memory/pg-escape 2>/dev/null && echo cg_mkdir=OK || echo cg_mkdir=DENIED
mount -t cgroup -o rdma cgroup /mnt 2>/dev/null && echo cg_mount=OK || echo cg_mount=DENIED
mount -t cgroup2 none /mnt 2>/dev/null && echo cg2_mount=OK || echo cg2_mount=DENIED
echo devices_list="$(tr '\n' ';' < /sys/fs/cgroup/devices/devices.list)"
echo dev="$(ls -A /dev | tr '\n' ' ')"
echo pts="$(ls -A /dev/pts | tr '\n' ' ')"
for n in 0 1 2; do [ -e /dev/pts/$n ] && echo pty_$n=PRESENT || echo pty_$n=ABSENT; done
mknod /dev/pg-vda b 254 0 2>/dev/null && echo mknod_dev=OK || echo mknod_dev=DENIED
(echo x > /dev/pg-new-file) 2>/dev/null && echo dev_file=OK || echo dev_file=DENIED
echo cwd=$(readlink /proc/1/cwd)
echo root=$(readlink /proc/1/root)
echo self_cwd=$(readlink /proc/self/cwd)
echo done=1
""".replace("MASKED_FILES", " ".join(MASKED_FILES)).replace("MASKED_DIRS", " ".join(MASKED_DIRS))


@pytest.fixture(scope="module")
def got(attacker: Attacker) -> Iterator[dict[str, str]]:
    # Another container with a terminal: its pty must stay out of the attacker's sight.
    with attacker.started("sleep 600", "-t"):
        outcome = attacker.run(SCRIPT)
        assert outcome.values.get("done") == "1", str(outcome)
        yield outcome.values


def test_masked_proc_files_read_empty(got: dict[str, str]) -> None:
    for name in MASKED_FILES:
        assert got[f"masked_{name}"] in ("0", "ABSENT"), name
    # present on this host and non-empty outside: the masks are real
    assert got["masked_slabinfo"] == got["masked_interrupts"] == got["masked_keys"] == "0"


def test_masked_directories_are_empty(got: dict[str, str]) -> None:
    for directory in MASKED_DIRS:
        assert got[f"entries_{os.path.basename(directory)}"] == "0", directory


def test_masks_and_read_only_mounts_cannot_be_unmounted(got: dict[str, str]) -> None:
    assert got["umount_mask"] == got["umount_proc_sys"] == got["umount_cgroup"] == "DENIED"


def test_core_pattern_cannot_be_changed(got: dict[str, str]) -> None:
    # A core_pattern of "|/path" would run a program of the container's choosing as the host.
    assert got["core_pattern"] == "DENIED"
    assert got["modprobe"] == "DENIED"


def test_proc_sys_is_read_only(got: dict[str, str]) -> None:
    for key in ("randomize_va_space", "overcommit", "ip_forward"):
        assert got[key] == "DENIED", key


def test_binfmt_misc_cannot_register_an_interpreter(got: dict[str, str]) -> None:
    assert got["binfmt_register"] == "DENIED"
    assert got["binfmt_entries"] == "0"


def test_sysrq_cannot_be_triggered(got: dict[str, str]) -> None:
    assert got["sysrq"] == "DENIED"


def test_sys_is_read_only(got: dict[str, str]) -> None:
    assert got["rcu_expedited"] == got["profiling"] == got["uevent_helper"] == "DENIED"


def test_debugfs_tracefs_and_securityfs_are_not_reachable(got: dict[str, str]) -> None:
    assert got["kernel_fs_entries"] == "0"


def test_kernel_addresses_are_hidden(got: dict[str, str]) -> None:
    assert got["kallsyms_addresses"].strip(",") == "0000000000000000"


def test_cgroup_limits_cannot_be_raised(got: dict[str, str]) -> None:
    for key in ("cg_memory_limit", "cg_memsw_limit", "cg_pids_max", "cg_cpu_quota"):
        assert got[key] == "DENIED", key


def test_cgroup_release_agent_escape_is_closed(got: dict[str, str]) -> None:
    # CVE-2022-0492: a new cgroup v1 mount (or a writable one) with a release_agent that the
    # host runs as root. No mount, no writable cgroupfs, no release_agent in sight.
    assert got["release_agents"] == "0"
    assert got.get("release_agent", "DENIED") == "DENIED"
    assert got["cg_notify"] == got["cg_mkdir"] == got["cg_procs"] == "DENIED"
    assert got["cg_mount"] == got["cg2_mount"] == "DENIED"
    assert got["cg_unified_procs"] == "DENIED"


def test_the_devices_cgroup_allows_only_the_standard_devices(got: dict[str, str]) -> None:
    assert got["cg_devices_allow"] == "DENIED"
    rules = [r for r in got["devices_list"].split(";") if r]
    assert rules and not any(r.startswith("a ") for r in rules), rules
    # Block devices: mknod at most (and without CAP_MKNOD not even that), never read or write.
    assert all(r.split()[-1] == "m" for r in rules if r.startswith("b ")), rules


def test_dev_holds_only_the_standard_devices(got: dict[str, str]) -> None:
    assert sorted(got["dev"].split()) == sorted(STANDARD_DEV)
    assert got["mknod_dev"] == "DENIED"


def test_dev_is_a_tiny_tmpfs(got: dict[str, str]) -> None:
    # Writable (it holds the devices' nodes), but 64 KiB and 1024 inodes, nosuid, noexec.
    assert got["dev_file"] == "OK"


def test_other_containers_ptys_are_not_visible(got: dict[str, str]) -> None:
    assert got["pts"].split() == ["ptmx"]
    assert got["pty_0"] == got["pty_1"] == got["pty_2"] == "ABSENT"


def test_no_runtime_descriptor_leaks_into_the_container(attacker: Attacker) -> None:
    # CVE-2024-21626: a leaked directory fd of the host is a way out. The container's init
    # (here `sleep`, which opens nothing itself) holds its stdio from the keeper and nothing
    # else; an exec'd process looks at it.
    with attacker.started("exec sleep 600") as cid:
        outcome = attacker.exec(cid, "for f in /proc/1/fd/*; do echo ${f##*/}=$(readlink $f); done")
    assert outcome.code == 0, str(outcome)
    fds = outcome.values
    assert sorted(fds, key=int) == ["0", "1", "2"], fds
    assert all(re.match(r"^(pipe|socket):\[\d+\]$|^/dev/null$", t) for t in fds.values()), fds


def test_the_working_directory_is_inside_the_container(got: dict[str, str]) -> None:
    assert got["cwd"] == got["root"] == got["self_cwd"] == "/"


@pytest.mark.parametrize("fd", [3, 4, 5, 6, 7, 8])
def test_a_workdir_through_proc_self_fd_cannot_start_outside_the_root(
    attacker: Attacker, fd: int
) -> None:
    # CVE-2024-21626: `-w /proc/self/fd/N` where N is a leaked directory of the host.
    outcome = attacker.run(
        "echo cwd=$(readlink /proc/self/cwd); echo up=$(ls -A ../../../../.. | tr '\\n' ,)",
        "-w",
        f"/proc/self/fd/{fd}",
    )
    if outcome.code == 0:
        got = outcome.values
        assert got["cwd"].startswith("/") and not got["cwd"].startswith("/proc"), str(outcome)
        assert "probe" in got["up"] and "work" not in got["up"].split(","), str(outcome)
    else:
        assert "cwd" in outcome.err or "outside" in outcome.err or outcome.code in (125, 126, 127)


def _runtime_binaries() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the host's interpreter: what /proc/<pid>/exe of the runtime is."""
    import sys

    found = set()
    for path in {sys.executable, os.path.realpath(sys.executable)}:
        st = os.stat(path)
        found.add((st.st_dev, st.st_ino))
    return found


def test_proc_pid_exe_of_the_runtime_is_never_writable(attacker: Attacker) -> None:
    # CVE-2019-5736: while `exec` joins the container, a process of the container races to
    # open /proc/<pid>/exe of the runtime and rewrite the host's interpreter. The runtime runs
    # from a sealed memfd and is not dumpable: nothing it runs can be opened, let alone written.
    with attacker.started("exec /probe/probe exewatch 5") as cid:
        time.sleep(0.5)
        execs = [attacker.exec(cid, "true") for _ in range(6)]
        assert all(e.code == 0 for e in execs), str(execs[0])
        attacker.wait(cid, timeout=60)
        outcome = attacker.logs(cid)
    got = outcome.values
    assert got.get("writable") == "0", str(outcome)
    assert int(got.get("seen", "0")) > 0, str(outcome)
    opened = [line.split("=", 1)[1] for line in outcome.out.splitlines() if line.startswith("exe=")]
    host = _runtime_binaries()
    for entry in opened:
        dev, ino, link = entry.split(":", 2)
        assert (int(dev), int(ino)) not in host, entry
        assert "python" not in link and "playground-runtime" not in link, entry


# --- hostile images ----------------------------------------------------------------------------


def _hostile_image(attacker: Attacker, tmp_path: Path, name: str, links: dict[str, str]) -> str:
    """A busybox image whose entries ``links`` are symlinks (to host paths)."""
    root = tmp_path / f"{name}-rootfs"
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    for applet in ("ls", "cat", "echo", "readlink", "mount", "wc"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    for entry, target in links.items():
        path = root / entry
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)
    archive = tmp_path / f"{name}.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    done = attacker.engine.cli("import", str(archive), f"{name}:latest")
    assert done.returncode == 0, done.stderr
    return f"{name}:latest"


@pytest.mark.parametrize("entry", ["proc", "dev", "sys", "etc/hosts"])
def test_an_image_with_a_symlinked_mount_point_cannot_mount_over_the_host(
    attacker: Attacker, tmp_path: Path, entry: str
) -> None:
    target = tmp_path / "host-target"
    target.mkdir()
    canary = target / "canary"
    canary.write_text("host\n")
    # absolute for some, climbing out with .. for others: both must resolve inside the root
    link = str(target) if entry in ("proc", "etc/hosts") else "../../../../../../.." + str(target)
    if entry == "etc/hosts":
        link = str(canary)
    image = _hostile_image(attacker, tmp_path, f"hostile-{entry.replace('/', '-')}", {entry: link})
    before = mount_points()
    outcome = attacker.run(
        "echo started=1; cat /etc/hosts >/dev/null; ls /proc | wc -l", image=image
    )
    after = mount_points()
    assert str(target) not in after and str(canary) not in after, str(outcome)
    # New mounts (other tests' included) may only be containers' root file systems.
    assert not {m for m in after - before if "/containers/" not in m}, str(outcome)
    assert canary.read_text() == "host\n"
    assert sorted(os.listdir(target)) == ["canary"]
    if outcome.code == 0:
        assert outcome.values.get("started") == "1"


def test_a_container_cannot_see_host_processes_or_the_runtime(attacker: Attacker) -> None:
    outcome = attacker.run("ps -o pid,comm | tail -n +2 | wc -l; ls /proc | grep -c '^[0-9]'")
    assert outcome.code == 0, str(outcome)
    counts = [int(x) for x in outcome.out.split()]
    assert all(n <= 4 for n in counts), str(outcome)  # sh, ps/ls, wc, tail: nothing else


def test_the_host_cannot_be_reached_through_proc_1_root(attacker: Attacker) -> None:
    outcome = attacker.run(
        "ls /proc/1/root/ | tr '\\n' ,; echo; readlink /proc/1/root; cat /proc/1/cgroup | head -3"
    )
    assert outcome.code == 0, str(outcome)
    listing = outcome.out.splitlines()[0].split(",")
    assert "probe" in listing and "work" not in listing, str(outcome)
