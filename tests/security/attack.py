"""The attacker's tools: containers started through the engine's CLI with the default profile,
the static C probe bind-mounted at /probe, and host-side watchers (is the host still
responsive? which processes are left?)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.engine_fixtures import EngineProcess

PROBE_SOURCE = Path(__file__).with_name("probe.c")
# A host process (fork + exec of `true`) or a small computation slower than this while a
# container attacks means the host did not stay responsive. Typical: a few milliseconds.
HOST_LATENCY_BOUND = 1.0
# Docker's default capabilities minus NET_RAW, MKNOD, AUDIT_WRITE and SETFCAP:
# CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, SETPCAP 8,
# NET_BIND_SERVICE 10, SYS_CHROOT 18.
EXPECTED_CAPS = sum(1 << bit for bit in (0, 1, 3, 4, 5, 6, 7, 8, 10, 18))
_KEY_VALUE = re.compile(r"^([A-Za-z0-9_]+)=(.*)$")


def build_probe(dest: Path) -> Path:
    """``gcc -static`` the probe into ``dest`` (a directory bind-mounted at /probe)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    binary = dest / "probe"
    subprocess.run(
        ["gcc", "-static", "-O2", "-pthread", "-o", str(binary), str(PROBE_SOURCE)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return binary


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def values(self) -> dict[str, str]:
        """``key=value`` lines of the output (the last one wins)."""
        found: dict[str, str] = {}
        for line in self.out.splitlines():
            match = _KEY_VALUE.match(line.strip())
            if match:
                found[match.group(1)] = match.group(2)
        return found

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-3000:]}"


class Attacker:
    """Runs shell scripts in containers of one engine, each with the probe at /probe."""

    def __init__(self, engine: EngineProcess, probe_dir: Path) -> None:
        self.engine = engine
        self.probe_dir = probe_dir

    def _flags(self, flags: tuple[str, ...]) -> list[str]:
        return ["-v", f"{self.probe_dir}:/probe:ro", *flags]

    def run(
        self, script: str, *flags: str, image: str = "busybox", timeout: float = 120
    ) -> Outcome:
        """``run --rm`` a container whose command is ``sh -c script``."""
        done = self.engine.cli(
            "run", "--rm", *self._flags(flags), image, "sh", "-c", script, timeout=timeout
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    def start(self, script: str, *flags: str, image: str = "busybox") -> str:
        """``run -d``: the container's id."""
        done = self.engine.cli("run", "-d", *self._flags(flags), image, "sh", "-c", script)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def exec(self, cid: str, script: str, timeout: float = 60) -> Outcome:
        done = self.engine.cli("exec", cid, "sh", "-c", script, timeout=timeout)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def logs(self, cid: str) -> Outcome:
        done = self.engine.cli("logs", cid)
        return Outcome(done.returncode, done.stdout, done.stderr)

    def wait(self, cid: str, timeout: float = 120) -> int:
        done = self.engine.cli("wait", cid, timeout=timeout)
        return int(done.stdout.strip() or -1)

    def inspect(self, cid: str) -> dict[str, object]:
        done = self.engine.cli("inspect", cid)
        data: list[dict[str, object]] = json.loads(done.stdout)
        return data[0]

    def remove(self, cid: str) -> None:
        self.engine.cli("rm", "-f", cid)

    @contextlib.contextmanager
    def started(self, script: str, *flags: str) -> Iterator[str]:
        cid = self.start(script, *flags)
        try:
            yield cid
        finally:
            self.remove(cid)

    def cgroup_dir(self, controller: str, cid: str) -> Path:
        from runtime.supervisor.engine import cgroup_parent

        parent = cgroup_parent(str(self.engine.root)).lstrip("/")
        return Path("/sys/fs/cgroup") / controller / parent / cid


@dataclass
class Responsiveness:
    """The worst latencies the host showed while an attack ran."""

    spawn: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.spawn + self.compute, default=0.0)

    def assert_bounded(self) -> None:
        assert self.spawn and self.compute, "the host probe took no samples"
        assert self.worst < HOST_LATENCY_BOUND, (
            f"host stalled: worst spawn {max(self.spawn):.3f} s, "
            f"worst computation {max(self.compute):.3f} s"
        )


def watch_host(seconds: float, interval: float = 0.05) -> Responsiveness:
    """Time a fork+exec of `true` and a small computation, over and over, for ``seconds``."""
    result = Responsiveness()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        subprocess.run(["true"], check=True, timeout=30)
        result.spawn.append(time.monotonic() - started)
        started = time.monotonic()
        sum(i * i for i in range(20000))
        result.compute.append(time.monotonic() - started)
        time.sleep(interval)
    return result


class Background:
    """A function run in a thread; ``result()`` joins it."""

    def __init__(self, target: object, *args: object) -> None:
        self._value: object = None
        self._error: BaseException | None = None

        def body() -> None:
            try:
                self._value = target(*args)  # type: ignore[operator]
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=body, daemon=True)
        self._thread.start()

    def result(self, timeout: float = 300) -> object:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self._value


def ns_inode(pid: int, kind: str = "pid") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def processes_in_pid_ns(inode: int) -> list[int]:
    """Host PIDs of every process whose PID namespace is ``inode``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and ns_inode(int(name)) == inode:
            found.append(int(name))
    return found


def status_fields(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}
