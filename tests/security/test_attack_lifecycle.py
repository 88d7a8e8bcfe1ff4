"""Lifecycle attacks: processes that try to outlive their container (orphans, daemons,
zombies), what `exec` runs, and a runtime killed in the middle of setting a container up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.engine_fixtures import EngineProcess, running_engine
from tests.security.attack import (
    EXPECTED_CAPS,
    Attacker,
    mount_points,
    ns_inode,
    processes_in_pid_ns,
    status_fields,
)

pytestmark = pytest.mark.root

SURVIVORS = r"""
trap '' TERM HUP INT
sleep 1000 &
(sleep 1001 &)
setsid sh -c 'sleep 1002 & exec sleep 1003' &
sh -c 'sleep 0 & exec sleep 1004' &
(trap '' TERM; exec sleep 1005) &
echo ready=1
while :; do sleep 1; done
"""


def _wait_for(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stopped(attacker: Attacker) -> Iterator[dict[str, object]]:
    """A container full of orphans, daemons, a zombie and SIGTERM-proof processes; stopped."""
    cid = attacker.start(SURVIVORS)
    try:
        _wait_for(lambda: "ready=1" in attacker.logs(cid).out)
        init_pid = int(attacker.inspect(cid)["State"]["Pid"])  # type: ignore[index]
        pidns = ns_inode(init_pid)
        assert pidns is not None
        _wait_for(lambda: len(processes_in_pid_ns(pidns)) >= 8)
        before = processes_in_pid_ns(pidns)
        states = [status_fields(pid).get("State", "")[:1] for pid in before]
        done = attacker.engine.cli("stop", "-t", "1", cid)
        after = processes_in_pid_ns(pidns)
        tasks = (attacker.cgroup_dir("pids", cid) / "cgroup.procs").read_text().split()
        yield {"before": before, "states": states, "after": after, "tasks": tasks, "stop": done}
    finally:
        attacker.remove(cid)


def test_orphans_and_daemons_are_gone_after_stop(stopped: dict[str, object]) -> None:
    assert len(stopped["before"]) >= 8  # type: ignore[arg-type]
    assert stopped["stop"].returncode == 0  # type: ignore[attr-defined]
    assert stopped["after"] == []
    assert stopped["tasks"] == []


def test_zombies_are_gone_after_stop(stopped: dict[str, object]) -> None:
    assert "Z" in stopped["states"]  # type: ignore[operator]
    assert stopped["after"] == []


def test_removal_leaves_no_mount_loop_device_or_cgroup(attacker: Attacker) -> None:
    from runtime.volumes import loop

    cid = attacker.start("sleep 600")
    folder = attacker.engine.root / "containers" / cid
    image = folder / "writable.img"
    assert loop.bound_to(str(image)), "the writable layer is on a loop device"
    cgroups = [attacker.cgroup_dir(c, cid) for c in ("pids", "memory", "cpu")]
    assert all(c.is_dir() for c in cgroups)
    attacker.remove(cid)
    assert not any(m.startswith(str(folder)) for m in mount_points())
    _wait_for(lambda: not loop.bound_to(str(image)), timeout=5)
    assert not folder.exists()
    assert not any(c.exists() for c in cgroups)


def test_exec_processes_get_the_same_filters_limits_and_namespaces(attacker: Attacker) -> None:
    with attacker.started("sleep 600") as cid:
        outcome = attacker.exec(
            cid,
            "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status | sed 's/:\\s*/=/';"
            " echo cgroup=$(grep pids /proc/self/cgroup | cut -d: -f3);"
            " echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' ')",
        )
    got = outcome.values
    assert outcome.code == 0, str(outcome)
    assert got["Seccomp"] == "2" and got["NoNewPrivs"] == "1"
    assert int(got["CapEff"], 16) == int(got["CapBnd"], 16) == EXPECTED_CAPS
    assert got["cgroup"] == "/"  # the container's own cgroup (its namespace's root)
    assert got["pid1"].strip() == "sleep 600"


# --- a runtime killed in the middle --------------------------------------------------------------

MARKER = (
    "grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status"
    " > /out/$(cat /proc/sys/kernel/random/uuid).status; sleep 600"
)


@pytest.fixture
def doomed_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    """An engine of its own: its keeper (which runs the runtime) gets killed."""
    with running_engine(tmp_path / "doomed") as eng:
        yield eng


def _keeper_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _our_processes(root: Path, exclude: set[int]) -> list[int]:
    """Processes forked by this engine's keeper (runtime code: its command line) or running
    in one of its containers' cgroups (user code)."""
    from runtime.supervisor.engine import cgroup_parent

    parent = cgroup_parent(str(root))
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{name}/cgroup") as f:
                cgroup = f.read()
        except OSError:
            continue
        if f"{parent}/" in cgroup or ("keeper" in cmdline and str(root) in cmdline):
            found.append(int(name))
    return found


def _user_code(pid: int) -> bool:
    try:
        return not os.readlink(f"/proc/{pid}/exe").startswith("/memfd:")
    except OSError:
        return False


def test_a_runtime_killed_mid_setup_leaves_nothing_running_without_its_filters(
    doomed_engine: EngineProcess, probe_dir: Path, tmp_path: Path
) -> None:
    from runtime.supervisor.keeper_client import ensure_keeper

    engine = doomed_engine
    out = tmp_path / "out"
    out.mkdir()
    unfiltered: list[tuple[int, dict[str, str]]] = []
    # Delays after the keeper forked its first child; None: after the container has started.
    for delay in (0.0, 0.01, 0.03, 0.08, 0.2, 0.5, None):
        keeper = engine.keeper_pid()
        assert keeper is not None
        cmd = [sys.executable, "-m", "runtime", "--root", str(engine.root), "run", "-d"]
        cmd += ["-v", f"{out}:/out", "busybox", "sh", "-c", MARKER]
        client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _keeper_children(keeper) and client.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        if delay is None:
            client.wait(30)
            _wait_for(lambda: any(out.glob("*.status")))
        else:
            time.sleep(delay)
        os.kill(keeper, signal.SIGKILL)
        client.wait(30)
        time.sleep(0.3)
        exclude = {engine.daemon.pid}
        for pid in _our_processes(engine.root, exclude):
            fields = status_fields(pid)
            if _user_code(pid) and (
                fields.get("Seccomp") != "2"
                or fields.get("NoNewPrivs") != "1"
                or int(fields.get("CapEff", "0"), 16) & ~EXPECTED_CAPS
            ):
                unfiltered.append((pid, fields))
        ensure_keeper(str(engine.root))
    markers = list(out.glob("*.status"))
    assert markers, "no attempt got as far as running the container's command"
    for marker in markers:
        text = marker.read_text()
        assert "Seccomp:\t2" in text and "NoNewPrivs:\t1" in text, text
    assert unfiltered == []
    # Then cleaning up (a new keeper, rm -f, gc) leaves nothing at all behind.
    ids = engine.cli("ps", "-aq").stdout.split()
    if ids:
        engine.cli("rm", "-f", *ids)
    engine.cli("gc")
    keeper = engine.keeper_pid()
    _wait_for(lambda: _our_processes(engine.root, {engine.daemon.pid, keeper or 0}) == [], 10)
