"""The known runc escapes, attempted from inside the container; each must fail."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Bundle

pytestmark = pytest.mark.root


def _created(bundle: Bundle, args: list[str]) -> str:
    cid = bundle.new_id()
    bundle.config["process"]["args"] = args
    bundle.config["process"]["terminal"] = False
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    result = bundle.cli("create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stderr
    return cid


def test_the_runtime_s_executable_is_a_sealed_copy_while_init_waits(bundle: Bundle) -> None:
    """CVE-2019-5736: the init (still the runtime's interpreter) runs from a sealed memfd."""
    cid = _created(bundle, ["true"])
    pid = json.loads(bundle.cli("state", cid).stdout)["pid"]
    assert os.readlink(f"/proc/{pid}/exe").startswith("/memfd:playground-runtime")
    with pytest.raises(OSError), open(f"/proc/{pid}/exe", "r+b") as exe:
        exe.write(b"#!")
    bundle.cli("delete", "--force", cid)


def test_a_container_process_cannot_reach_the_waiting_init_s_exe(bundle: Bundle) -> None:
    """CVE-2019-5736 from inside: open /proc/1/exe of the not-yet-started init."""
    cid = _created(bundle, ["true"])
    result = bundle.cli(
        "exec",
        cid,
        "sh",
        "-c",
        "echo pwned >> /proc/1/exe; echo w=$?; cat /proc/1/exe > /dev/null; echo r=$?; "
        "ls -l /proc/1/cwd /proc/1/root /proc/1/fd/ 2>&1 | grep -c denied",
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "w=1"
    assert lines[1] == "r=1"
    assert int(lines[2]) >= 1
    bundle.cli("delete", "--force", cid)


def test_an_entrypoint_linked_to_proc_self_exe_cannot_rewrite_the_runtime(bundle: Bundle) -> None:
    """The original CVE-2019-5736 attack: the image's binary is a link to /proc/self/exe,
    and a process in the container races to open the runtime's executable for writing."""
    (bundle.path / "rootfs/bin/evil").symlink_to("/proc/self/exe")
    interpreter = os.path.realpath(sys.executable)
    before = hashlib.sha256(Path(interpreter).read_bytes()).hexdigest()
    cid = _created(bundle, ["sleep", "30"])
    assert bundle.cli("start", cid).returncode == 0
    watcher = (
        "end=$(( $(date +%s) + 4 )); while [ $(date +%s) -lt $end ]; do "
        "for p in /proc/[0-9]*; do case $(readlink $p/exe) in /memfd*|/root*|/usr*|/work*) "
        "(echo x >> $p/exe) 2>/dev/null && echo WROTE $(readlink $p/exe) >> /tmp/log;; esac; "
        "done; done; echo finished >> /tmp/log"
    )
    assert bundle.cli("exec", "-d", cid, "sh", "-c", watcher).returncode == 0
    for _ in range(5):
        bundle.cli("exec", cid, "/bin/evil")
    time.sleep(4.5)
    log = bundle.cli("exec", cid, "cat", "/tmp/log").stdout
    assert "finished" in log
    assert "WROTE" not in log
    assert hashlib.sha256(Path(interpreter).read_bytes()).hexdigest() == before
    bundle.cli("delete", "--force", cid)


def test_exec_with_a_cwd_through_a_leaked_descriptor_is_refused(bundle: Bundle) -> None:
    """CVE-2024-21626: a working directory reached through /proc/self/fd/N."""
    cid = _created(bundle, ["sleep", "30"])
    bundle.cli("start", cid)
    for fd in range(3, 10):
        result = bundle.cli("exec", "--cwd", f"/proc/self/fd/{fd}", cid, "pwd")
        assert result.returncode != 0 or result.stdout.strip().startswith("/proc") is False
        assert "/work" not in result.stdout and "/sys/fs/cgroup" not in result.stdout
    bundle.cli("delete", "--force", cid)


def test_a_symlinked_mount_destination_stays_inside_the_rootfs(
    bundle: Bundle, tmp_path: Path
) -> None:
    """CVE-2021-30465: a symlink in the image must not redirect a mount to the host."""
    outside = tmp_path / "host-dir"
    outside.mkdir()
    (outside / "sentinel").write_text("host")
    (bundle.path / "rootfs/data").symlink_to(str(outside))
    bundle.config["mounts"].append(
        {"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
    )
    result = bundle.run(["sh", "-c", "grep ' /work\\| /tmp/' /proc/mounts; ls /data; true"])
    assert result.returncode == 0, result.stderr
    assert (outside / "sentinel").read_text() == "host"
    assert not os.path.ismount(outside)
    assert (bundle.path / "rootfs" / str(outside).lstrip("/")).is_dir()


def test_an_image_whose_proc_is_a_symlink_is_refused(bundle: Bundle) -> None:
    """CVE-2019-16884: /proc as a symlink must not place procfs elsewhere."""
    proc = bundle.path / "rootfs/proc"
    proc.rmdir()
    (bundle.path / "rootfs/fakeproc").mkdir()
    proc.symlink_to("/fakeproc")
    result = bundle.run(["true"])
    assert result.returncode != 0
    assert "/proc" in result.stderr


def test_the_console_socket_receives_the_pty_master(bundle: Bundle, tmp_path: Path) -> None:
    path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    got: list[int] = []

    def accept() -> None:
        conn, _ = listener.accept()
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        got.extend(fds)
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    cid = bundle.new_id()
    bundle.config["process"]["args"] = ["sh"]
    bundle.config["process"]["terminal"] = True
    bundle.config["linux"]["cgroupsPath"] = bundle.cgroups_path(cid)
    bundle.write()
    result = bundle.cli("create", "--console-socket", path, "--bundle", str(bundle.path), cid)
    thread.join(10)
    listener.close()
    assert result.returncode == 0, result.stderr
    assert len(got) == 1
    master = got[0]
    assert bundle.cli("start", cid).returncode == 0
    os.write(master, b"tty; echo $((6*7))\n")
    output = b""
    deadline = time.monotonic() + 5
    while b"42" not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            output += os.read(master, 4096)
    os.close(master)
    assert b"/dev/pts/0" in output
    assert b"42" in output
    bundle.cli("delete", "--force", cid)
