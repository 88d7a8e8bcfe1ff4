"""User namespaces, on by default: a container's root is an unprivileged host uid, the first
of a range no other container shares, so that whatever escapes the container's other walls
(a kernel bug, a leaked descriptor) lands as nobody on the host and as a stranger to every
other container. Image layers stay shared (idmapped, never copied); volumes keep the ids the
containers see. Per-user kernel limits are the container's own."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from runtime.container.idmap import FIRST_BASE
from tests.security.attack import (
    Attacker,
    Outcome,
    ns_inode,
    processes_in_pid_ns,
    status_fields,
)

pytestmark = pytest.mark.root

RANGE = 65536
ETC_FILES = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


def _init_pid(attacker: Attacker, cid: str) -> int:
    state = attacker.inspect(cid)["State"]
    assert isinstance(state, dict)
    return int(state["Pid"])


def _uid_map(pid: int) -> list[int]:
    with open(f"/proc/{pid}/uid_map") as f:
        return [int(x) for x in f.read().split()]


def _as_host_user(uid: int, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run on the host as ``uid``: what an escaped container process would be."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing: run `make deps`"
    cmd = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", script]
    return subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=30, check=False)


def _wait_for_line(attacker: Attacker, cid: str, key: str, timeout: float = 30) -> Outcome:
    deadline = time.monotonic() + timeout
    while True:
        logs = attacker.logs(cid)
        if key in logs.values or time.monotonic() > deadline:
            return logs
        time.sleep(0.1)


def test_container_root_is_an_unprivileged_host_uid(attacker: Attacker) -> None:
    with attacker.started("sleep 600") as cid:
        pid = _init_pid(attacker, cid)
        base = _uid_map(pid)[1]
        inside = attacker.exec(cid, "sleep 30 & id -u; cat /proc/self/uid_map /proc/self/gid_map")
        assert inside.code == 0, inside
        # To the host, every process of the container (the exec'd ones too) is that uid.
        members = processes_in_pid_ns(ns_inode(pid) or -1)
        owners = {
            tuple(status_fields(p).get(k, "").split()) for p in members for k in ("Uid", "Gid")
        }
        own_userns = os.stat("/proc/self/ns/user").st_ino
        userns = {ns_inode(p, "user") for p in members}
    assert base >= FIRST_BASE
    assert inside.out.split() == ["0", "0", str(base), str(RANGE), "0", str(base), str(RANGE)]
    assert len(members) >= 2
    assert owners == {(str(base),) * 4}
    assert own_userns not in userns and len(userns) == 1


def test_every_container_gets_its_own_range(attacker: Attacker) -> None:
    with attacker.started("sleep 600") as first, attacker.started("sleep 600") as second:
        ranges = [_uid_map(_init_pid(attacker, cid)) for cid in (first, second)]
    (_, a, size_a), (_, b, size_b) = ranges
    assert a != b
    assert a + size_a <= b or b + size_b <= a  # no id in common


def test_an_escaped_root_is_nobody_to_the_host_and_to_other_containers(
    attacker: Attacker,
) -> None:
    """Simulated escape: run the container root's host uid on the host itself."""
    secret = "umask 077; echo s3cret > /root/secret; sleep 600"
    with attacker.started("sleep 600") as first, attacker.started(secret) as second:
        base = _uid_map(_init_pid(attacker, first))[1]
        other_root = attacker.engine.root / "containers" / second / "rootfs"
        time.sleep(0.3)
        script = (
            f"cat {other_root}/root/secret; cat /etc/shadow; touch /etc/escaped; "
            f"kill -0 {_init_pid(attacker, second)}; kill -0 1"
        )
        done = _as_host_user(base, script)
    assert "s3cret" not in done.stdout
    assert done.stderr.count("Permission denied") >= 3, done.stderr
    assert "Operation not permitted" in done.stderr or "not permitted" in done.stderr.lower()
    assert not os.path.exists("/etc/escaped")


def test_image_layers_are_shared_never_copied_nor_changed(attacker: Attacker) -> None:
    script = (
        "echo intruder:x:0:0::/:/bin/sh >> /etc/passwd; chown 123:456 /bin/busybox; "
        "stat -c '%u %g' /bin/busybox /etc/group; echo done=1"
    )
    with attacker.started(f"{script}; sleep 600") as cid:
        _wait_for_line(attacker, cid, "done")
        logs = attacker.logs(cid).out.split()
        base = _uid_map(_init_pid(attacker, cid))[1]
        upper = attacker.engine.root / "containers" / cid / "writable" / "upper"
        copied = sorted(str(p.relative_to(upper)) for p in upper.rglob("*") if p.is_file())
        upper_owner = os.stat(upper / "etc/passwd").st_uid
    # Inside: root's files are root's; the chown applied to the container's own copy.
    assert logs[:4] == ["123", "456", "0", "0"], logs
    # Only what the container changed (and the mount points of /etc/hosts & co).
    assert set(copied) - set(ETC_FILES) == {"bin/busybox", "etc/passwd"}
    assert upper_owner == base  # its copy is the container root's, on the host too
    layers = attacker.engine.root / "images" / "layers"
    for passwd in layers.rglob("etc/passwd"):
        assert "intruder" not in passwd.read_text()
        assert os.stat(passwd).st_uid == 0
    for busybox in layers.rglob("bin/busybox"):
        assert (os.stat(busybox).st_uid, os.stat(busybox).st_gid) == (0, 0)


def test_volumes_keep_the_ids_containers_see(attacker: Attacker) -> None:
    name = "userns-shared"
    try:
        first = attacker.run(
            "echo one > /data/f; chown 1000:1000 /data/f; echo ok=1", "-v", f"{name}:/data"
        )
        assert first.values.get("ok") == "1", first
        second = attacker.run(
            "stat -c '%u %g' /data/f; echo two >> /data/f; cat /data/f", "-v", f"{name}:/data"
        )
        assert second.code == 0, second
        assert second.out.split() == ["1000", "1000", "one", "two"]
        mountpoint = attacker.engine.cli("volume", "inspect", name)
        data = Path(json.loads(mountpoint.stdout)[0]["Mountpoint"])
        assert (os.stat(data / "f").st_uid, os.stat(data / "f").st_gid) == (1000, 1000)
    finally:
        attacker.engine.cli("volume", "rm", "-f", name)


def _host_inotify_works() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


def test_inotify_instances_are_the_containers_own(attacker: Attacker) -> None:
    """Exhaust the per-user inotify instances from two containers at once: each gets its own
    quota and the host's root keeps its own (harmless if it fails: held only seconds)."""
    assert _host_inotify_works()
    grab = "/probe/probe inotify 4096 60"
    with attacker.started(grab) as first, attacker.started(grab) as second:
        outcomes = [_wait_for_line(attacker, cid, "instances") for cid in (first, second)]
        host_ok = _host_inotify_works()
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    for outcome in outcomes:
        assert outcome.values.get("error") == "EMFILE", outcome
        assert int(outcome.values["instances"]) >= limit - 8, outcome
    assert host_ok, "the containers took the host root's inotify instances"
