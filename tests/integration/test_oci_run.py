"""The OCI runtime, driven through its CLI as runc would be, asserting from inside."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Bundle

pytestmark = pytest.mark.root


def _status_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*)$", text, re.M)
    assert match, f"{name} missing from /proc/self/status"
    return match.group(1).strip()


def test_the_process_is_pid_1_with_its_own_hostname(bundle: Bundle) -> None:
    bundle.config["hostname"] = "box-one"
    result = bundle.run(["sh", "-c", "echo $$; hostname"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "box-one"]


def test_the_exit_status_is_the_process_s(bundle: Bundle) -> None:
    assert bundle.run(["sh", "-c", "exit 3"]).returncode == 3
    assert bundle.run(["true"]).returncode == 0


def test_a_process_killed_by_a_signal_exits_128_plus_the_signal(bundle: Bundle) -> None:
    # PID 1 ignores signals it has no handler for, so the shell runs a child to be killed.
    result = bundle.run(["sh", "-c", "sh -c 'kill -TERM $$; sleep 5'; echo status=$?"])
    assert result.stdout.strip() == "status=143"


def test_a_missing_command_fails_at_create_with_its_name(bundle: Bundle) -> None:
    result = bundle.run(["no-such-binary"])
    assert result.returncode != 0
    assert "no-such-binary" in result.stderr
    assert "not found" in result.stderr


def test_env_cwd_and_user_are_applied(bundle: Bundle) -> None:
    bundle.config["process"]["env"] = ["PATH=/bin:/usr/bin", "GREETING=hello world"]
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 7]}
    result = bundle.run(["sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g; cat /proc/self/status'])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["hello world", "/tmp", "1000", "1001"]
    groups = _status_field(result.stdout, "Groups").split()
    assert sorted(groups) == ["5", "7"]


def test_capability_sets_nnp_and_seccomp_are_set(bundle: Bundle) -> None:
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"] = {
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
        "inheritable": [],
        "ambient": [],
    }
    result = bundle.run(["cat", "/proc/self/status"])
    assert result.returncode == 0, result.stderr
    expected = f"{(1 << 5) | (1 << 10):016x}"
    assert _status_field(result.stdout, "CapBnd") == expected
    assert _status_field(result.stdout, "CapEff") == expected
    assert _status_field(result.stdout, "CapPrm") == expected
    assert _status_field(result.stdout, "CapInh") == "0" * 16
    assert _status_field(result.stdout, "CapAmb") == "0" * 16
    assert _status_field(result.stdout, "NoNewPrivs") == "1"
    assert _status_field(result.stdout, "Seccomp") == "2"


def test_ambient_capabilities_reach_a_non_root_user(bundle: Bundle) -> None:
    caps = ["CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["capabilities"] = {
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
        "inheritable": caps,
        "ambient": caps,
    }
    result = bundle.run(["cat", "/proc/self/status"])
    assert result.returncode == 0, result.stderr
    assert _status_field(result.stdout, "CapAmb") == f"{1 << 10:016x}"
    assert _status_field(result.stdout, "CapEff") == f"{1 << 10:016x}"


def test_rlimits_are_applied(bundle: Bundle) -> None:
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 300},
    ]
    result = bundle.run(["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -u"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100", "200", "300"]


def test_an_rlimit_above_the_hard_limit_is_an_error_that_names_it(bundle: Bundle) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1},
    ]
    result = bundle.run(["true"])
    assert result.returncode != 0
    assert "RLIMIT_NOFILE" in result.stderr
    assert "CAP_SYS_RESOURCE" in result.stderr


def test_proc_is_masked_and_sys_is_read_only(bundle: Bundle) -> None:
    script = (
        "cat /proc/kcore 2>/dev/null | head -c 10 | wc -c; "
        "cat /proc/sched_debug 2>/dev/null | wc -c; "
        "ls /proc/acpi 2>/dev/null | wc -l; "
        "touch /sys/x 2>&1 | grep -c Read-only; "
        "(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo wrote || echo 1; "
        "grep ' /sys ' /proc/mounts"
    )
    result = bundle.run(["sh", "-c", script])
    lines = result.stdout.splitlines()
    assert len(lines) == 6, result.stdout + result.stderr
    assert lines[0] == "0"  # /proc/kcore is absent on this kernel or masked
    assert lines[1] == "0"
    assert lines[2] == "0"
    assert lines[3] == "1"
    assert lines[4] == "1", result.stdout + result.stderr
    assert " ro," in lines[5]


def test_dev_holds_only_the_standard_devices(bundle: Bundle) -> None:
    result = bundle.run(["sh", "-c", "ls /dev; echo ---; ls /dev/pts; grep devpts /proc/mounts"])
    assert result.returncode == 0, result.stderr
    devs, rest = result.stdout.split("---\n")
    assert set(devs.split()) == {
        "full",
        "null",
        "random",
        "tty",
        "urandom",
        "zero",
        "fd",
        "stdin",
        "stdout",
        "stderr",
        "ptmx",
        "pts",
        "shm",
        "mqueue",
    }
    assert "ptmx" in rest
    assert "newinstance" in rest or "ptmxmode=666" in rest


def test_the_mount_table_holds_the_rootfs_and_the_configured_mounts(bundle: Bundle) -> None:
    result = bundle.run(["cat", "/proc/self/mountinfo"])
    assert result.returncode == 0, result.stderr
    targets = [line.split()[4] for line in result.stdout.splitlines()]
    assert targets[0] == "/"
    for want in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert want in targets
    host_paths = [t for t in targets if t.startswith(("/work", "/root", "/run/playground"))]
    assert host_paths == []


def test_a_read_only_root_refuses_writes(bundle: Bundle) -> None:
    bundle.config["root"]["readonly"] = True
    result = bundle.run(["sh", "-c", "touch /file 2>&1; echo done"])
    assert "Read-only file system" in result.stdout


def test_the_memory_limit_ends_a_memory_bomb_with_137(bundle: Bundle) -> None:
    limit = 32 * 1024 * 1024
    bundle.config["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}
    result = bundle.run(["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"])
    assert result.returncode == 137


def test_the_pids_limit_contains_a_fork_bomb(bundle: Bundle) -> None:
    bundle.config["linux"]["resources"]["pids"] = {"limit": 16}
    cid = bundle.new_id()
    bundle.config["process"]["args"] = ["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 30"]
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    result = bundle.cli("run", "-d", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    time.sleep(1.0)
    pids_file = f"/sys/fs/cgroup/pids{bundle.cgroups_path(cid)}/pids.current"
    if not os.path.exists(pids_file):
        pids_file = f"/sys/fs/cgroup{bundle.cgroups_path(cid)}/pids.current"
    assert int(Path(pids_file).read_text()) <= 16
    assert os.system("true") == 0  # the host can still fork
    assert bundle.cli("delete", "--force", cid).returncode == 0
    assert not os.path.exists(os.path.dirname(pids_file))


def test_create_start_state_kill_delete(bundle: Bundle, tmp_path: Path) -> None:
    cid = bundle.new_id()
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ]
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    pid_file = tmp_path / "pid"
    created = bundle.cli("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid)
    assert created.returncode == 0, created.stderr
    state = json.loads(bundle.cli("state", cid).stdout)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["bundle"] == str(bundle.path)
    assert state["pid"] == int(pid_file.read_text())
    assert state["ociVersion"].startswith("1.")
    assert "annotations" in state
    assert bundle.cli("start", cid).returncode == 0
    assert json.loads(bundle.cli("state", cid).stdout)["status"] == "running"
    listed = json.loads(bundle.cli("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == [cid]
    refused = bundle.cli("delete", cid)
    assert refused.returncode != 0 and "running" in refused.stderr
    assert bundle.cli("kill", cid, "TERM").returncode == 0
    deadline = time.monotonic() + 5
    while json.loads(bundle.cli("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert bundle.cli("delete", cid).returncode == 0
    missing = bundle.cli("state", cid)
    assert missing.returncode != 0 and cid in missing.stderr


def test_kill_accepts_names_and_numbers(bundle: Bundle) -> None:
    cid = bundle.new_id()
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    assert bundle.cli("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    assert bundle.cli("kill", cid, "bogus").returncode != 0
    assert bundle.cli("kill", cid, "9").returncode == 0
    deadline = time.monotonic() + 5
    while json.loads(bundle.cli("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert bundle.cli("delete", cid).returncode == 0


def test_exec_runs_in_the_container_s_namespaces_and_cgroup(bundle: Bundle) -> None:
    cid = bundle.new_id()
    bundle.config["hostname"] = "exec-box"
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    assert bundle.cli("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    result = bundle.cli(
        "exec",
        "--env",
        "X=42",
        "--cwd",
        "/tmp",
        cid,
        "sh",
        "-c",
        "hostname; echo $X; pwd; cat /proc/self/cgroup; ps -o pid,args; exit 5",
    )
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["exec-box", "42", "/tmp"]
    assert "sleep 30" in result.stdout
    pids_line = [line for line in lines if ":pids:" in line]
    assert pids_line and pids_line[0].endswith(":/")  # inside the container's cgroup namespace
    bundle.cli("delete", "--force", cid)


def test_delete_leaves_no_mounts_and_no_cgroup(bundle: Bundle) -> None:
    cid = bundle.new_id()
    assert bundle.run(["true"], cid=cid).returncode == 0
    with open("/proc/self/mountinfo") as f:
        ours = [line for line in f if str(bundle.path) in line]
    assert ours == []
    for root, _dirs, _files in os.walk("/sys/fs/cgroup"):
        assert cid not in root


def test_no_host_descriptor_leaks_into_the_container(bundle: Bundle) -> None:
    extra = os.open("/etc/hostname", os.O_RDONLY)  # inheritable in the CLI child via pass_fds
    try:
        result = bundle.run(["ls", "/proc/self/fd"], pass_fds=(extra,))
    finally:
        os.close(extra)
    assert result.returncode == 0, result.stderr
    assert sorted(int(x) for x in result.stdout.split()) == [0, 1, 2, 3]  # 3: ls's own dir fd


def test_a_cwd_outside_the_rootfs_is_refused(bundle: Bundle) -> None:
    bundle.config["process"]["cwd"] = "/proc/self/fd/4"
    result = bundle.run(["pwd"])
    assert result.returncode != 0
    assert "cwd" in result.stderr
