"""More of config.json, asserted from inside: user namespaces, hooks, sysctls, joined
namespaces, domainname, oom_score_adj, exec --process and the exit of a detached run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Bundle

pytestmark = pytest.mark.root


def test_a_user_namespace_maps_container_root_to_an_unprivileged_host_uid(
    bundle: Bundle,
) -> None:
    base = 200000
    root = bundle.path / "rootfs"
    for path in [root, *root.rglob("*")]:
        os.lchown(path, base, base)
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": base, "size": 65536}]
    result = bundle.run(["sh", "-c", "id -u; cat /proc/self/uid_map; touch /probe; echo $$"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "0"
    assert lines[1:4] == ["0", str(base), "65536"]
    assert lines[4] == "1"
    assert os.stat(root / "probe").st_uid == base


def test_hooks_get_the_state_and_run_in_order(bundle: Bundle, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\nstate=$(cat)\necho "$1 $state" >> {log}\n')
    script.chmod(0o755)
    hooks = {}
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        hooks[kind] = [{"path": str(script), "args": ["hook.sh", kind]}]
    bundle.config["hooks"] = hooks
    result = bundle.run(["true"])
    assert result.returncode == 0, result.stderr
    entries = log.read_text().splitlines()
    assert [e.split()[0] for e in entries] == ["prestart", "createRuntime", "poststart", "poststop"]
    state = json.loads(entries[0].split(" ", 1)[1])
    assert state["pid"] > 0
    assert state["bundle"] == str(bundle.path)


def test_a_failing_prestart_hook_fails_create_and_leaves_nothing(
    bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/false"}]}
    cid = bundle.new_id()
    result = bundle.run(["true"], cid=cid)
    assert result.returncode != 0
    assert "prestart" in result.stderr
    assert bundle.cli("state", cid).returncode != 0


def test_namespaced_sysctls_and_domainname_are_set(bundle: Bundle) -> None:
    bundle.config["domainname"] = "example.test"
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"}
    result = bundle.run(
        [
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmni",
            "/proc/sys/kernel/domainname",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1000", "example.test"]


def test_joining_an_existing_network_namespace_by_path(bundle: Bundle) -> None:
    name = f"pg-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        inode = os.stat(f"/run/netns/{name}").st_ino
        for ns in bundle.config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{name}"
        result = bundle.run(["readlink", "/proc/self/ns/net"])
        assert result.stdout.strip() == f"net:[{inode}]", result.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_the_oom_score_adj_is_applied(bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = 500
    result = bundle.run(["cat", "/proc/self/oom_score_adj"])
    assert result.stdout.strip() == "500"


def test_exec_with_a_process_file_and_a_user(bundle: Bundle, tmp_path: Path) -> None:
    cid = bundle.new_id()
    bundle.config["process"]["args"] = ["sleep", "30"]
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    assert bundle.cli("run", "-d", "--bundle", str(bundle.path), cid).returncode == 0
    process = dict(bundle.config["process"])
    process.update(args=["sh", "-c", "id -u; echo $FROM_FILE"], env=["FROM_FILE=yes"])
    process["user"] = {"uid": 33, "gid": 33}
    (tmp_path / "process.json").write_text(json.dumps(process))
    result = bundle.cli("exec", "--process", str(tmp_path / "process.json"), cid)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["33", "yes"]
    assert bundle.cli("exec", "--user", "7:8", cid, "id").stdout.startswith("uid=7 gid=8")


def test_an_unsupported_field_is_an_error_that_names_it(bundle: Bundle) -> None:
    bundle.config["linux"]["intelRdt"] = {"closID": "x"}
    result = bundle.run(["true"])
    assert result.returncode != 0
    assert "linux.intelRdt" in result.stderr


def test_spec_writes_a_config_that_runs(tmp_path: Path, fresh_rootfs: Path) -> None:
    from tests.integration.conftest import cli

    bundle = fresh_rootfs.parent
    state = tmp_path / "state"
    assert cli(state, "spec", "--bundle", str(bundle)).returncode == 0
    again = cli(state, "spec", "--bundle", str(bundle))
    assert again.returncode != 0 and "exists" in again.stderr
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo spec-ok"]
    config["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    result = cli(state, "run", "--bundle", str(bundle), "spec-test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "spec-ok"


def _ignore_everything() -> None:
    """In the runtime's parent: ignore every signal, glibc's reserved ones (32, 33) too."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    action = (ctypes.c_ulong * 4)(1, 0, 0, 0)  # handler SIG_IGN, flags, restorer, mask
    for signum in range(1, 65):
        if signum not in (9, 19):
            libc.syscall(13, signum, ctypes.byref(action), None, 8)


def test_the_process_gets_default_dispositions_whatever_the_runtime_inherited(
    bundle: Bundle,
) -> None:
    if os.uname().machine != "x86_64":
        pytest.fail("the probe uses x86_64's rt_sigaction number")
    result = bundle.run(
        ["grep", "-E", "SigIgn|SigBlk", "/proc/self/status"], preexec_fn=_ignore_everything
    )
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":\t") for line in result.stdout.splitlines())
    assert int(fields["SigIgn"], 16) == 0
    assert int(fields["SigBlk"], 16) == 0
