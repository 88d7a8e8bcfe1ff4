"""``python -m runtime`` end to end: a fresh root, busybox imported with the CLI, the daemon
started by the CLI itself on the first container command, and assertions made from inside
the containers. Teardown removes every container and stops the daemon and keeper by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cli.wire import WireClient
from runtime.errors import ContainerRuntimeError

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
# The container sees its own cgroup: v2 files at the top, or v1 controllers in folders.
PIDS_MAX = "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
MEMORY_MAX = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
)


class CliEngine:
    def __init__(self, root: Path) -> None:
        self.root = root

    def cli(
        self, *args: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "runtime", "--root", str(self.root), *args],
            cwd=REPO,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return subprocess.CompletedProcess(
            result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
        )

    def ok(self, *args: str, input: bytes | None = None) -> str:
        result = self.cli(*args, input=input)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def daemon_pid(self) -> int | None:
        try:
            return int(WireClient(str(self.root / "engine.sock")).ping()["pid"])
        except ContainerRuntimeError:
            return None

    def keeper_pid(self) -> int | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                sock.settimeout(2)
                sock.connect(str(self.root / "keeper.sock"))
                sock.send(b'{"op": "ping", "seq": 1}')
                return int(json.loads(sock.recv(4096))["pid"])
        except (OSError, ValueError, KeyError):
            return None


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def shutdown(engine: CliEngine) -> None:
    ids = engine.cli("ps", "-aq", "--no-trunc").stdout.split()
    if ids:
        engine.cli("rm", "-f", *ids)
    daemon, keeper = engine.daemon_pid(), engine.keeper_pid()
    engine.cli("gc")
    if daemon is not None:
        _stop(daemon)
    if keeper is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(keeper, signal.SIGKILL)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Iterator[CliEngine]:
    base = tmp_path_factory.mktemp("engine-cli")
    tarball = base / "busybox.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(busybox_rootfs, arcname=".")
    eng = CliEngine(base / "root")
    try:
        image_id = eng.ok("import", str(tarball), "busybox").strip()
        assert image_id.startswith("sha256:")
        yield eng
    finally:
        shutdown(eng)


def test_run_rm_true_needs_no_tty_starts_the_daemon_and_leaves_nothing(engine: CliEngine) -> None:
    result = engine.cli("run", "--rm", "busybox", "true")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert engine.daemon_pid() is not None
    assert (engine.root / "daemon.log").exists()
    assert engine.ok("ps", "-aq") == ""


def test_run_keeps_stdout_and_stderr_apart_and_exits_with_the_status(engine: CliEngine) -> None:
    result = engine.cli("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_a_missing_command_is_127_and_a_non_executable_one_126(engine: CliEngine) -> None:
    missing = engine.cli("run", "--rm", "busybox", "no-such-command")
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr
    assert engine.cli("run", "--rm", "busybox", "/etc/passwd").returncode == 126
    assert engine.ok("ps", "-aq") == ""


def test_flags_reach_the_container(engine: CliEngine) -> None:
    script = f"echo $GREETING; pwd; hostname; id -u; {PIDS_MAX}; touch /x"
    result = engine.cli(
        "run", "--rm", "-e", "GREETING=hello", "-w", "/tmp", "--hostname", "box",
        "-u", "65534", "--pids-limit", "32", "--read-only", "busybox", "sh", "-c", script,
    )  # fmt: skip
    assert result.stdout.split() == ["hello", "/tmp", "box", "65534", "32"]
    assert "Read-only file system" in result.stderr


def test_a_memory_limit_in_docker_units(engine: CliEngine) -> None:
    out = engine.ok("run", "--rm", "--memory", "64m", "busybox", "sh", "-c", MEMORY_MAX)
    assert out.strip() == str(64 << 20)


def test_a_tty_run_writes_crlf(engine: CliEngine) -> None:
    assert engine.ok("run", "--rm", "-t", "busybox", "echo", "tty") == "tty\r\n"


def test_stdin_is_forwarded_with_dash_i(engine: CliEngine) -> None:
    out = engine.ok("run", "--rm", "-i", "busybox", "head", "-n", "1", input=b"first\nsecond\n")
    assert out == "first\n"


def test_the_end_of_stdin_ends_cat(engine: CliEngine) -> None:
    assert (
        engine.cli("run", "--rm", "-i", "busybox", "cat", input=b"x\n", timeout=10).stdout == "x\n"
    )


def test_a_detached_container_through_its_lifecycle(engine: CliEngine) -> None:
    script = "echo started; trap 'exit 0' TERM; while true; do sleep 0.1; done"
    cid = engine.ok(
        "run", "-d", "--name", "life", "--label", "team=cli", "busybox", "sh", "-c", script
    )
    cid = cid.strip()
    assert len(cid) == 64
    rows = [json.loads(line) for line in engine.ok("ps", "--format", "json").splitlines()]
    (row,) = [r for r in rows if r["Names"] == "life"]
    assert row["ID"] == cid[:12] and row["State"] == "running" and row["Status"].startswith("Up")
    assert engine.cli("exec", "life", "sh", "-c", "exit 5").returncode == 5
    assert engine.ok("exec", "life", "hostname") == cid[:12] + "\n"
    (info,) = json.loads(engine.ok("inspect", "life"))
    assert info["Id"] == cid and info["Config"]["Labels"] == {"team": "cli"}
    removal = engine.cli("rm", "life")
    assert removal.returncode == 125
    assert removal.stderr.startswith("Error response from daemon: ")
    assert engine.ok("stop", "-t", "5", "life") == "life\n"
    assert engine.ok("wait", "life") == "0\n"
    assert engine.ok("logs", "life") == "started\n"
    assert "Exited (0)" in engine.ok("ps", "-a")
    assert engine.ok("rm", "life") == "life\n"


def test_a_killed_container_exits_128_plus_the_signal(engine: CliEngine) -> None:
    engine.ok("run", "-d", "--name", "victim", "busybox", "sleep", "60")
    assert engine.ok("kill", "victim") == "victim\n"
    assert engine.ok("wait", "victim") == "137\n"
    engine.ok("rm", "victim")


def test_start_attach_runs_a_created_container_in_the_foreground(engine: CliEngine) -> None:
    engine.ok("create", "--name", "later", "busybox", "sh", "-c", "echo ran; exit 4")
    result = engine.cli("start", "-a", "later")
    assert (result.returncode, result.stdout) == (4, "ran\n")
    engine.ok("rm", "later")


def test_images_tag_and_rmi_refuse_an_image_in_use(engine: CliEngine) -> None:
    engine.ok("tag", "busybox", "mybox:1")
    listing = engine.ok("images")
    assert listing.splitlines()[0].split() == [
        "REPOSITORY",
        "TAG",
        "IMAGE",
        "ID",
        "CREATED",
        "SIZE",
    ]
    assert "mybox" in listing
    assert engine.ok("rmi", "mybox:1") == "Untagged: mybox:1\n"
    engine.ok("create", "--name", "user", "busybox", "true")
    refused = engine.cli("rmi", "busybox")
    assert refused.returncode == 125 and "in use" in refused.stderr
    engine.ok("rm", "user")
    assert len(engine.ok("images", "-q").split()) == 1


def test_volumes_outlive_containers_and_are_refused_while_used(engine: CliEngine) -> None:
    assert engine.ok("volume", "create", "notes") == "notes\n"
    engine.ok("run", "--rm", "-v", "notes:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert engine.ok("run", "--rm", "-v", "notes:/data:ro", "busybox", "cat", "/data/f") == "kept\n"
    assert "notes" in engine.ok("volume", "ls", "-q").split()
    (details,) = json.loads(engine.ok("volume", "inspect", "notes"))
    assert details["Name"] == "notes" and details["Driver"] == "local"
    engine.ok("create", "--name", "holder", "-v", "notes:/data", "busybox", "true")
    refused = engine.cli("volume", "rm", "notes")
    assert refused.returncode == 125 and "in use" in refused.stderr
    engine.ok("rm", "holder")
    assert engine.ok("volume", "rm", "notes") == "notes\n"


def test_stats_shows_memory_and_pids(engine: CliEngine) -> None:
    engine.ok("run", "-d", "--name", "busy", "--memory", "32m", "busybox", "sleep", "60")
    try:
        out = engine.ok("stats", "--no-stream", "--format", "json", "busy")
        (row,) = [json.loads(line) for line in out.splitlines()]
        assert row["Name"] == "busy" and row["MemUsage"].endswith("/ 32MiB")
        assert int(row["PIDs"]) >= 1
    finally:
        engine.cli("rm", "-f", "busy")


def test_start_attach_reruns_an_exited_container_without_its_old_output(
    engine: CliEngine,
) -> None:
    # The rerun is attached once it has started, so it waits a little before printing.
    script = "sleep 1; echo run; exit 2"
    assert engine.cli("run", "--name", "twice", "busybox", "sh", "-c", script).returncode == 2
    result = engine.cli("start", "-a", "twice")
    assert (result.returncode, result.stdout) == (2, "run\n")
    assert engine.ok("logs", "twice") == "run\nrun\n"
    engine.ok("rm", "twice")


def test_attach_replays_the_scrollback_and_detaches_at_the_end_of_stdin(
    engine: CliEngine,
) -> None:
    engine.ok("run", "-d", "--name", "chatty", "busybox", "sh", "-c", "echo hello; sleep 60")
    deadline = time.monotonic() + 10
    while engine.ok("logs", "chatty") != "hello\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    result = engine.cli("attach", "chatty", input=b"")
    assert (result.returncode, result.stdout) == (0, "hello\n")
    assert "running" in engine.ok("inspect", "chatty")
    engine.ok("rm", "-f", "chatty")


def test_bootstrap_busybox_makes_a_tagged_image(tmp_path: Path) -> None:
    other = CliEngine(tmp_path / "root")
    image_id = other.ok("bootstrap", "busybox").strip()
    rows = [json.loads(line) for line in other.ok("images", "--format", "json").splitlines()]
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in rows] == [
        ("busybox", "latest", image_id.removeprefix("sha256:")[:12])
    ]
