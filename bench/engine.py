"""The engine against podman, docker, crun and runc, side by side in one run (interleaved rounds,
median and p90 of N):

1. ``run --rm busybox true`` as a whole process: ours (the CLI, with a warm daemon), podman (its
   own storage, configuration and locks under the bench's temporary directory) and docker (only
   when an engine answers).
2. Through the client API with a warm daemon, in this process: create+start+wait+remove of
   ``true``, against ``crun run`` (and ``runc run``) as whole processes on an equivalent bundle.
3. Start to the first prompt byte of ``sh -i`` on a TTY: ours through the client API (create
   with tty and stdin, attach, start, first output byte), against ``crun run -d`` and
   ``runc run -d`` with a console socket served here (spawn to the first byte of the master).
4. Density: N (200) idle ``sleep 3600`` containers through the daemon. Memory per container
   beyond the sleep process itself = (delta of Slab + PageTables in /proc/meminfo + delta of
   the PSS of the daemon and the keeper) / N; the sleeps' own PSS is user memory outside that
   sum and is printed apart. The same for ``crun run -d`` (no monitor). All containers are
   removed afterwards (rm -f through the client) and the bench checks that no container,
   mount, cgroup, runtime state or process is left.

    python bench/engine.py [--runs N] [--density N] [--skip cli,api,tty,density,crun-density]
                           [--userns private|host]

Runs as root; installs crun, runc and podman from Debian when missing. Everything lives in a
temporary directory that is removed at the end, with a private engine root and daemon; only
processes started here are stopped (by PID). The bench runs in its own mount namespace (a slave
of the host's): on hybrid cgroup hosts it hides the cgroup2 controller list from crun there
(see bench/common.py); for podman, /var/lib/containers (its blob-info cache) is redirected
into the temporary directory and /run (crun's states) is a tmpfs. The engine daemon is started
before that, in the host's namespace, so ours runs exactly as deployed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from runtime.client import AttachStream, ContainerSpec, EngineClient  # noqa: E402
from runtime.errors import ContainerRuntimeError  # noqa: E402

PY = sys.executable
IMAGE = "busybox"
PODMAN_REF = "docker.io/library/busybox:latest"
SECTIONS = ("cli", "api", "tty", "density", "crun-density")
SETTLE = 2.0  # seconds between the last start and the memory reading
MiB = 1024.0


class BenchError(Exception):
    pass


def quiet(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1] if lines else "(no output)"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole process; raises BenchError when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = last_line(proc.stderr.decode(errors="replace"))
        raise BenchError(f"{Path(cmd[0]).name} exited {proc.returncode}: {err}")
    return elapsed


def rotated(names: list[str], i: int) -> list[str]:
    k = i % len(names)
    return names[k:] + names[:k]


# -- /proc readings ------------------------------------------------------------------------------


def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for row in f:
            key, value = row.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for row in f:
                if row.startswith("Pss:"):
                    return int(row.split()[1])
    except OSError:
        pass
    return 0


def cgroup_mounts() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for row in f:
            fields = row.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append(fields[4])
    return out


def mounts_under(prefix: Path, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    want = str(prefix).rstrip("/") + "/"
    out = []
    with open(mountinfo) as f:
        for row in f:
            target = row.split()[4].replace("\\040", " ")
            if target.startswith(want):
                out.append(target)
    return out


def cgroup_dirs(name: str) -> list[str]:
    """Every cgroup directory at /<name> in any hierarchy."""
    return [mp + "/" + name for mp in cgroup_mounts() if os.path.isdir(mp + "/" + name)]


def child_dirs(path: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(path) if e.is_dir()]
    except OSError:
        return []


def rmdir_tree(path: str) -> bool:
    """Remove an empty cgroup subtree (cgroup directories go with rmdir only)."""
    for child in child_dirs(path):
        rmdir_tree(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


# -- our daemon ----------------------------------------------------------------------------------


def keeper_pid(root: Path) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(5)
        sock.connect(str(root / "keeper.sock"))
        sock.send(b'{"op": "ping", "seq": 0}')
        return int(json.loads(sock.recv(65536))["pid"])


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [x.decode(errors="replace") for x in f.read().split(b"\0") if x]
    except OSError:
        return []


class Daemon:
    """A daemon of our own on a temporary root; stopped by PID (and its keeper by PID)."""

    def __init__(self, root: Path, log: Path, userns: str = "private") -> None:
        self.root = root
        self.log = log
        self.userns = userns
        self.proc: subprocess.Popen[bytes] | None = None
        self.keeper = 0
        self.client = EngineClient(str(root / "engine.sock"))

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "runtime", "--root", str(self.root), "daemon", "--userns", self.userns],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited {self.proc.returncode}: {self.log_tail()}")
            try:
                asyncio.run(self.client.ping())
                break
            except ContainerRuntimeError:
                if time.monotonic() > deadline:
                    raise BenchError(f"the daemon did not answer: {self.log_tail()}") from None
                time.sleep(0.05)
        self.keeper = keeper_pid(self.root)

    def log_tail(self) -> str:
        try:
            return last_line(self.log.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    def stop(self) -> list[str]:
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                problems.append(f"daemon {self.pid} ignored SIGTERM; killed")
                self.proc.kill()
                self.proc.wait(15)
        # The keeper ignores SIGTERM by design (it outlives daemon restarts); it is ours, since
        # it serves our temporary root: check that before killing it.
        if self.keeper and any(str(self.root) == a for a in cmdline(self.keeper)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.keeper, signal.SIGKILL)
            if not common.wait_gone(self.keeper):
                problems.append(f"keeper {self.keeper} still running")
        return problems


# -- podman and docker ---------------------------------------------------------------------------


class Podman:
    """podman with every piece of state under ``base``: storage, run root, tmp dir, locks,
    network config and events by its configuration files; by mounts in the bench's private
    mount namespace, the blob-info cache that podman keeps in /var/lib/containers, and /run
    (a tmpfs), where crun keeps its states: `podman container cleanup`, run by conmon when
    the container exits, drops `--runtime-flag root=...` and deletes in /run/crun."""

    CACHE = "/var/lib/containers"

    def __init__(self, base: Path) -> None:
        self.dir = base / "podman"
        self.env = dict(os.environ)
        self.version = ""
        self.runtime = "crun" if shutil.which("crun") else "runc"
        self.bound: list[str] = []
        self.made_cache_dir = False
        self.libpod_parent_before = bool(cgroup_dirs("libpod_parent"))

    def setup(self, tarball: Path) -> str | None:
        """Load the image; returns why podman cannot run here, or None."""
        if shutil.which("podman") is None:
            install(["podman"])
        if shutil.which("podman") is None:
            return "not installed and apt-get could not install it"
        d = self.dir
        for sub in ("storage", "run", "tmp", "net", "volumes", "cache"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "containers.conf").write_text(
            "[containers]\n"
            # podman's default rlimits exceed what this host lets root raise (no
            # CAP_SYS_RESOURCE): crun then fails with setrlimit EPERM. Our default is 1024 too.
            'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/events.log"\n'
            f'tmp_dir = "{d}/tmp"\n'
            f'volume_path = "{d}/volumes"\n'
            'lock_type = "file"\n'
            "[network]\n"
            f'network_config_dir = "{d}/net"\n'
        )
        (d / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/storage"\nrunroot = "{d}/run"\n'
        )
        self.env.update(
            CONTAINERS_CONF=str(d / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(d / "storage.conf"),
            TMPDIR=str(d / "tmp"),
        )
        if not os.path.isdir(self.CACHE):
            os.makedirs(self.CACHE, mode=0o700)
            self.made_cache_dir = True
        common.mount(str(d / "cache"), self.CACHE, None, common.MS_BIND)
        self.bound.append(self.CACHE)
        common.mount("tmpfs", "/run", "tmpfs", common.MS_NOSUID | common.MS_NODEV, "mode=755")
        self.bound.append("/run")
        self.version = last_line(quiet(["podman", "--version"]).stdout).split()[-1]
        loaded = quiet(["podman", "load", "-q", "-i", str(tarball)], env=self.env)
        if loaded.returncode != 0:
            return f"podman load: {last_line(loaded.stderr)}"
        return None

    def argv(self) -> list[str]:
        return ["podman", "run", "--rm", "--network", "none", PODMAN_REF, "true"]

    def cleanup(self) -> list[str]:
        problems = []
        if self.env.get("CONTAINERS_CONF"):
            for cmd in (["podman", "rm", "-a", "-f"], ["podman", "rmi", "-a", "-f"]):
                done = quiet(cmd, env=self.env)
                if done.returncode != 0:
                    problems.append(f"{' '.join(cmd)}: {last_line(done.stderr)}")
        common.reap_orphans()
        for target in sorted(mounts_under(self.dir), reverse=True):
            with contextlib.suppress(OSError):
                common.umount(target)
        while self.bound:
            common.umount(self.bound.pop())
        if self.made_cache_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self.CACHE)
        if not self.libpod_parent_before:  # podman's cgroupfs parent (and its conmon cgroup)
            for path in cgroup_dirs("libpod_parent"):
                if not rmdir_tree(path):
                    problems.append(f"cgroup {path} not empty")
        left = mounts_under(self.dir)
        if left:
            problems.append(f"mounts left under {self.dir}: {left}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems


class Docker:
    def __init__(self, tarball: Path) -> None:
        self.tarball = tarball
        self.loaded = False

    def setup(self) -> str | None:
        if shutil.which("docker") is None:
            return "docker: not installed"
        try:
            probe = quiet(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
        except subprocess.TimeoutExpired:
            return "docker: no engine (docker info timed out)"
        if probe.returncode != 0 or not probe.stdout.strip():
            return "docker: no engine"
        if quiet(["docker", "image", "inspect", f"{IMAGE}:latest"]).returncode != 0:
            done = quiet(["docker", "load", "-i", str(self.tarball)])
            if done.returncode != 0:
                return f"docker: cannot load busybox: {last_line(done.stderr)}"
            self.loaded = True
        return None

    def argv(self) -> list[str]:
        return ["docker", "run", "--rm", "--network", "none", f"{IMAGE}:latest", "true"]

    def cleanup(self) -> list[str]:
        if self.loaded:
            done = quiet(["docker", "rmi", f"{IMAGE}:latest"])
            if done.returncode != 0:
                return [f"docker rmi: {last_line(done.stderr)}"]
        return []


def install(packages: list[str]) -> None:
    missing = [p for p in packages if shutil.which(p) is None]
    if missing:
        print(f"installing {' '.join(missing)} with apt-get", flush=True)
        quiet(["apt-get", "install", "-y", "-qq", *missing], timeout=600)


# -- the bench -----------------------------------------------------------------------------------


@dataclass
class Bench:
    base: Path
    root: Path
    tarball: Path
    rootfs: Path
    daemon: Daemon
    peers: list[str]
    runs: int
    problems: list[str] = field(default_factory=list)
    cgroup_parents: set[str] = field(default_factory=set)

    def state(self, name: str) -> str:
        path = self.base / "oci" / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def bundle(self, name: str, args: list[str], terminal: bool = False) -> Path:
        return common.make_bundle(
            self.base / "bundles", args, terminal=terminal, name=name, rootfs=self.rootfs
        )


def section_cli(b: Bench) -> None:
    print(f"== 1. `run --rm {IMAGE} true`, whole process (interleaved, n={b.runs})", flush=True)
    contenders: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "ours (CLI, warm daemon)": (
            [PY, "-m", "runtime", "--root", str(b.root), "run", "--rm", IMAGE, "true"],
            None,
        )
    }
    cleanups: list[Callable[[], list[str]]] = []
    try:
        podman = Podman(b.base)
        cleanups.append(podman.cleanup)
        why = podman.setup(b.tarball)
        if why is not None:
            print(f"podman: cannot run here: {why}")
        else:
            contenders[f"podman {podman.version} ({podman.runtime}, --network none)"] = (
                podman.argv(),
                podman.env,
            )
        docker = Docker(b.tarball)
        cleanups.append(docker.cleanup)
        why = docker.setup()
        if why is not None:
            print(why)
        else:
            contenders["docker (--network none)"] = (docker.argv(), None)
        for name, (argv, env) in list(contenders.items()):  # warm-up, and can it run at all?
            try:
                timed(argv, env)
            except BenchError as exc:
                print(f"{name}: cannot run here: {exc}")
                del contenders[name]
            common.reap_orphans()
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        failures: dict[str, str] = {}
        for i in range(b.runs):
            for name in rotated(list(contenders), i):
                if name in failures:
                    continue
                argv, env = contenders[name]
                try:
                    samples[name].append(timed(argv, env))
                except BenchError as exc:
                    failures[name] = str(exc)
                common.reap_orphans()
        for name in contenders:
            note = f"   FAILED: {failures[name]}" if name in failures else ""
            print(common.line(name, samples[name], note=note))
        ours = samples.get("ours (CLI, warm daemon)", [])
        for name, values in samples.items():
            if name.startswith("podman") and ours and values:
                ratio = statistics.median(ours) / statistics.median(values)
                print(f"   ours / podman (medians): {ratio:.2f}x  (issue 3 asks <= 0.75x)")
    finally:
        for cleanup in cleanups:
            b.problems.extend(cleanup())


async def api_true(client: EngineClient) -> tuple[float, float, float, float]:
    """(create+start+wait+remove, start+wait, create, remove) of `true` through the API."""
    t0 = time.perf_counter()
    info = await client.create(ContainerSpec(image=IMAGE, cmd=("true",)))
    try:
        t1 = time.perf_counter()
        await client.start(info.id)
        code = await client.wait(info.id)
        t2 = time.perf_counter()
    finally:
        await client.remove(info.id, force=True)
    t3 = time.perf_counter()
    if code != 0:
        raise BenchError(f"`true` exited {code}")
    return t3 - t0, t2 - t1, t1 - t0, t3 - t2


async def section_api(b: Bench) -> None:
    print(
        f"== 2. `true` through the client API (warm daemon) vs OCI runtimes' whole `run` "
        f"(interleaved, n={b.runs})",
        flush=True,
    )
    client = b.daemon.client
    bundle = b.bundle("true", ["/bin/true"])
    states = {peer: b.state(f"{peer}-api") for peer in b.peers}
    total: list[float] = []
    start_exit: list[float] = []
    creates: list[float] = []
    removes: list[float] = []
    peer_samples: dict[str, list[float]] = {peer: [] for peer in b.peers}

    def peer_run(peer: str, cid: str) -> float:
        return timed([peer, "--root", states[peer], "run", "-b", str(bundle), cid])

    await api_true(client)  # warm-up
    for peer in b.peers:
        peer_run(peer, f"pgb{os.getpid()}-warm")
    for i in range(b.runs):
        for name in rotated(["ours", *b.peers], i):
            if name == "ours":
                t, s, c, r = await api_true(client)
                total.append(t)
                start_exit.append(s)
                creates.append(c)
                removes.append(r)
            else:
                peer_samples[name].append(peer_run(name, f"pgb{os.getpid()}-{i}"))
    print(common.line("ours api: create+start+wait+remove", total))
    print(common.line("ours api: start+wait (start to exit)", start_exit))
    print(common.line("ours api: create alone", creates))
    print(common.line("ours api: remove alone", removes))
    for peer in b.peers:
        print(common.line(f"{peer} run (whole process)", peer_samples[peer]))
    b.problems.extend(check_states(states))


def check_states(states: dict[str, str]) -> list[str]:
    problems = []
    for peer, state in states.items():
        listed = quiet([peer, "--root", state, "list", "-q"]).stdout.split()
        if listed:
            problems.append(f"{peer} states left: {listed}")
    return problems


async def first_output(stream: AttachStream) -> None:
    while True:
        chunk = await stream.read()
        if chunk is None:
            raise BenchError(f"sh -i exited ({stream.exit_code}) before any output")
        if chunk[1]:
            return


async def ours_tty(client: EngineClient) -> tuple[float, float]:
    """(create to first byte, start to first byte) of `sh -i` on a TTY."""
    spec = ContainerSpec(image=IMAGE, cmd=("sh", "-i"), tty=True, stdin=True)
    t0 = time.perf_counter()
    info = await client.create(spec)
    try:
        stream = await client.attach(info.id)
        try:
            t1 = time.perf_counter()
            await client.start(info.id)
            await asyncio.wait_for(first_output(stream), 20)
            t2 = time.perf_counter()
        finally:
            await stream.close()
    finally:
        await client.remove(info.id, force=True)
    return t2 - t0, t2 - t1


def peer_tty(peer: str, state: str, bundle: Path, sockets: Path, cid: str) -> float:
    """Spawn `PEER run -d --console-socket` and time it to the first byte on the PTY master."""
    path = sockets / f"{cid}.sock"
    pid_file = sockets / f"{cid}.pid"
    master = -1
    proc: subprocess.Popen[bytes] | None = None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(20)
        try:
            argv = [peer, "--root", state, "run", "-d", "--console-socket", str(path)]
            argv += ["--pid-file", str(pid_file), "-b", str(bundle), cid]
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                proc.kill()
                err = proc.communicate()[1].decode(errors="replace")
                raise BenchError(f"{peer} sent no console: {last_line(err)}") from None
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            master = fds[0]
            for extra in fds[1:]:
                os.close(extra)
            ready, _, _ = select.select([master], [], [], 20)
            if not ready:
                raise BenchError(f"{peer}: no output from sh -i within 20 s")
            os.read(master, 4096)
            elapsed = time.perf_counter() - t0
            err = proc.communicate(timeout=30)[1].decode(errors="replace")
            if proc.returncode != 0:
                raise BenchError(f"{peer} run -d exited {proc.returncode}: {last_line(err)}")
            return elapsed
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            quiet([peer, "--root", state, "kill", cid, "KILL"])
            with contextlib.suppress(OSError, ValueError):
                common.wait_gone(int(pid_file.read_text()))
            quiet([peer, "--root", state, "delete", "-f", cid])
            if master >= 0:
                os.close(master)
            for leftover in (path, pid_file):
                leftover.unlink(missing_ok=True)


async def section_tty(b: Bench) -> None:
    print(f"== 3. `sh -i` on a TTY: start to the first prompt byte (n={b.runs})", flush=True)
    client = b.daemon.client
    bundle = b.bundle("tty", ["sh", "-i"], terminal=True)
    sockets = b.base / "s"
    sockets.mkdir(exist_ok=True)
    states = {peer: b.state(f"{peer}-tty") for peer in b.peers}
    create_first: list[float] = []
    start_first: list[float] = []
    peer_samples: dict[str, list[float]] = {peer: [] for peer in b.peers}
    await ours_tty(client)  # warm-up
    for peer in b.peers:
        peer_tty(peer, states[peer], bundle, sockets, f"pgb{os.getpid()}-warm")
    for i in range(b.runs):
        for name in rotated(["ours", *b.peers], i):
            if name == "ours":
                c, s = await ours_tty(client)
                create_first.append(c)
                start_first.append(s)
            else:
                cid = f"pgb{os.getpid()}-{i}"
                peer_samples[name].append(peer_tty(name, states[name], bundle, sockets, cid))
            common.reap_orphans()
    print(common.line("ours api: start to first byte", start_first))
    print(common.line("ours api: create+attach+start to first byte", create_first))
    for peer in b.peers:
        print(common.line(f"{peer} run -d, console socket: spawn to byte", peer_samples[peer]))
    b.problems.extend(check_states(states))


@dataclass
class Memory:
    slab: float  # KiB, deltas
    sunreclaim: float
    page_tables: float
    ours_pss: float
    sleep_pss: float  # KiB per sleep process

    def per_container(self, n: int) -> float:
        return (self.slab + self.page_tables + self.ours_pss) / n


def memory_line(name: str, n: int, m: Memory) -> str:
    return (
        f"{name:30s} {m.per_container(n) / MiB:6.3f} MiB/container beyond the sleep  "
        f"[dSlab {m.slab / MiB:7.1f} (unreclaimable {m.sunreclaim / MiB:6.1f}) + "
        f"dPageTables {m.page_tables / MiB:5.1f} + dPSS(ours) {m.ours_pss / MiB:6.1f} MiB, "
        f"/ {n}; sleep's own PSS {m.sleep_pss:.0f} KiB, not in the sum]"
    )


def container_cgroups(pid: int, cid: str) -> set[str]:
    """The cgroup directories of container ``cid``'s init, in every hierarchy mounted here."""
    out: set[str] = set()
    mounts = cgroup_mounts()
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            rows = f.read().splitlines()
    except OSError:
        return out
    for row in rows:
        path = row.split(":", 2)[2]
        if cid not in path:
            continue
        for mp in mounts:
            if os.path.isdir(mp + path):
                out.add(mp + path)
    return out


async def section_density(b: Bench, n: int) -> None:
    print(f"== 4. density: {n} idle `sleep 3600` containers", flush=True)
    client = b.daemon.client
    ids: list[str] = []
    alive: list[int] = []
    cgroups: set[str] = set()
    keeper = b.daemon.keeper
    before = meminfo()
    pss_before = pss_kib(b.daemon.pid) + pss_kib(keeper)
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            info = await client.create(ContainerSpec(image=IMAGE, cmd=("sleep", "3600")))
            ids.append(info.id)
            await client.start(info.id)
        started = time.perf_counter() - t0
        await asyncio.sleep(SETTLE)
        after = meminfo()
        pss_after = pss_kib(b.daemon.pid) + pss_kib(keeper)
        pids = [(await client.inspect(cid)).pid for cid in ids]
        sleep_pss = [pss_kib(pid) for pid in pids]
        for cid, pid in zip(ids, pids, strict=True):
            if pid and os.path.exists(f"/proc/{pid}"):
                alive.append(pid)
                cgroups |= container_cgroups(pid, cid)
        b.cgroup_parents |= {os.path.dirname(c) for c in cgroups}
        mounts = len(mounts_under(b.root, f"/proc/{b.daemon.pid}/mountinfo"))
        ours = Memory(
            slab=after["Slab"] - before["Slab"],
            sunreclaim=after["SUnreclaim"] - before["SUnreclaim"],
            page_tables=after["PageTables"] - before["PageTables"],
            ours_pss=pss_after - pss_before,
            sleep_pss=statistics.mean(sleep_pss),
        )
        print(memory_line("ours (daemon + keeper)", n, ours))
        print(
            f"   started {n} in {started:.1f} s ({started / n * 1000:.0f} ms each); "
            f"{len(alive)} sleep processes alive, {mounts} mounts under the root; "
            f"daemon PSS {pss_kib(b.daemon.pid) / MiB:.1f} MiB, keeper {pss_kib(keeper) / MiB:.1f}"
        )
    finally:
        t1 = time.perf_counter()
        for cid in ids:
            try:
                await client.remove(cid, force=True)
            except ContainerRuntimeError as exc:
                b.problems.append(f"rm -f {cid[:12]}: {exc}")
        removed = time.perf_counter() - t1
        print(f"   rm -f of {len(ids)} through the client: {removed:.1f} s", flush=True)
    left = await client.list(all=True)
    mounts_left = mounts_under(b.root, f"/proc/{b.daemon.pid}/mountinfo")
    cgroups_left = sorted(c for c in cgroups if os.path.isdir(c))
    states_left = os.listdir(b.root / "oci") if (b.root / "oci").is_dir() else []
    pids_gone = not any(os.path.exists(f"/proc/{pid}") for pid in alive)
    print(
        f"   left: {len(left)} containers, {len(mounts_left)} mounts, "
        f"{len(cgroups_left)} of {len(cgroups)} cgroups, {len(states_left)} runtime states, "
        f"sleep processes {'gone' if pids_gone else 'STILL RUNNING'}"
    )
    if left or mounts_left or cgroups_left or states_left or not pids_gone:
        b.problems.append(
            f"density leftovers: containers {[c.id[:12] for c in left]}, mounts {mounts_left}, "
            f"cgroups {cgroups_left[:5]}, states {states_left[:5]}"
        )


def density_crun(b: Bench, n: int) -> None:
    state = b.state("crun-density")
    bundle = b.bundle("sleep", ["sleep", "3600"])
    pid_dir = b.base / "pids"
    pid_dir.mkdir(exist_ok=True)
    ids = [f"pgb{os.getpid()}-d{i}" for i in range(n)]
    started: list[int] = []
    before = meminfo()
    t0 = time.perf_counter()
    try:
        for cid in ids:
            pid_file = pid_dir / cid
            argv = ["crun", "--root", state, "run", "-d", "--pid-file", str(pid_file)]
            with open(b.base / "crun-density.err", "w+") as err:  # no pipe: the sleep keeps it
                code = subprocess.call(
                    [*argv, "-b", str(bundle), cid],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
                if code != 0:
                    err.seek(0)
                    raise BenchError(f"crun run -d exited {code}: {last_line(err.read())}")
            started.append(int(pid_file.read_text()))
        elapsed = time.perf_counter() - t0
        time.sleep(SETTLE)
        after = meminfo()
        m = Memory(
            slab=after["Slab"] - before["Slab"],
            sunreclaim=after["SUnreclaim"] - before["SUnreclaim"],
            page_tables=after["PageTables"] - before["PageTables"],
            ours_pss=0.0,
            sleep_pss=statistics.mean(pss_kib(pid) for pid in started),
        )
        print(memory_line("crun run -d (no monitor)", n, m))
        print(f"   started {n} in {elapsed:.1f} s ({elapsed / n * 1000:.0f} ms each)")
    finally:
        for pid in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in started:
            common.wait_gone(pid)
        for cid in quiet(["crun", "--root", state, "list", "-q"]).stdout.split():
            quiet(["crun", "--root", state, "delete", "-f", cid])
    states_left = quiet(["crun", "--root", state, "list", "-q"]).stdout.split()
    cgroups_left = [d for cid in ids for d in cgroup_dirs(cid)]
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}")]
    print(
        f"   left: {len(states_left)} crun states, {len(cgroups_left)} cgroups, "
        f"{len(alive)} sleep processes"
    )
    if states_left or cgroups_left or alive:
        b.problems.append(f"crun density leftovers: {states_left[:5]} {cgroups_left[:5]}")


# -- main ----------------------------------------------------------------------------------------


def prepare(b: Bench) -> None:
    """The engine root with the busybox image, its OCI tarball, and a busybox rootfs."""
    b.root.mkdir()
    done = quiet([PY, "-m", "runtime", "--root", str(b.root), "bootstrap", IMAGE])
    if done.returncode != 0:
        raise BenchError(f"bootstrap {IMAGE}: {last_line(done.stderr)}")
    done = quiet([PY, "-m", "runtime", "--root", str(b.root), "save", IMAGE, "-o", str(b.tarball)])
    if done.returncode != 0:
        raise BenchError(f"save {IMAGE}: {last_line(done.stderr)}")
    common.build_rootfs(b.rootfs)


def engine_cgroup_parent(root: Path) -> str:
    """The daemon's cgroup parent for ``root`` (as runtime.supervisor.engine.cgroup_parent
    names it; not imported, so that cleanup never depends on the engine's imports)."""
    return "playground-" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:12]


def final_cleanup(b: Bench) -> None:
    host_mounts: list[str] = []
    try:
        if b.daemon.proc is not None and b.daemon.proc.poll() is None:
            for info in asyncio.run(b.daemon.client.list(all=True)):
                b.problems.append(f"container {info.id[:12]} ({info.status}) left; removing")
                asyncio.run(b.daemon.client.remove(info.id, force=True))
            host_mounts = mounts_under(b.base, f"/proc/{b.daemon.pid}/mountinfo")
    except (ContainerRuntimeError, OSError) as exc:
        b.problems.append(f"final check through the daemon failed: {exc}")
    finally:
        b.problems.extend(b.daemon.stop())
    common.reap_orphans()
    parents = set(b.cgroup_parents) | set(cgroup_dirs(engine_cgroup_parent(b.root)))
    for parent in sorted(parents):
        if child_dirs(parent):
            b.problems.append(f"cgroup {parent} still has children {child_dirs(parent)[:3]}")
        elif not rmdir_tree(parent):
            b.problems.append(f"cannot remove cgroup {parent}")
    ours_ns = mounts_under(b.base)
    if host_mounts or ours_ns:
        b.problems.append(f"mounts left under {b.base}: {host_mounts + ours_ns}; not removed")
    else:
        shutil.rmtree(b.base, ignore_errors=True)


def section(b: Bench, name: str, run: Callable[[], object]) -> None:
    """Run one section; a failure is reported and the next section still runs."""
    try:
        run()
    except (BenchError, ContainerRuntimeError, OSError, subprocess.SubprocessError) as exc:
        message = f"section {name} failed: {type(exc).__name__}: {exc}"
        print(message, flush=True)
        b.problems.append(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="rounds per timing (default 20)")
    parser.add_argument("--density", type=int, default=200, help="idle containers (200)")
    parser.add_argument("--skip", default="", help=f"comma-separated, of {','.join(SECTIONS)}")
    parser.add_argument(
        "--userns",
        choices=("private", "host"),
        default="private",
        help="our daemon's --userns: containers in user namespaces (the default) or not",
    )
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(SECTIONS):
        parser.error(f"unknown sections to skip: {sorted(skip - set(SECTIONS))}")
    if os.geteuid() != 0:
        parser.error("run as root")
    install(["crun", "runc"])
    peers = [p for p in ("crun", "runc") if shutil.which(p)]
    began = time.monotonic()
    print(f"load average {common.loadavg()}, {os.cpu_count()} CPUs", flush=True)
    base = Path(tempfile.mkdtemp(prefix="pg-bench-"))
    root = base / "root"
    daemon = Daemon(root, base / "daemon.log", args.userns)
    print(f"ours: daemon --userns={args.userns}")
    b = Bench(base, root, base / "busybox.tar", base / "rootfs", daemon, peers, args.runs)
    try:
        prepare(b)
        daemon.start()  # in the host's mount namespace, as deployed
        common.enter_private_mount_namespace()
        note = common.hide_hybrid_controllers(base)
        if note:
            print(note)
        common.set_subreaper()
        if "cli" not in skip:
            section(b, "cli", lambda: section_cli(b))
        if "api" not in skip:
            section(b, "api", lambda: asyncio.run(section_api(b)))
        if "tty" not in skip:
            section(b, "tty", lambda: asyncio.run(section_tty(b)))
        crun = "crun-density" not in skip and "crun" in peers
        if "density" not in skip:
            section(b, "density", lambda: asyncio.run(section_density(b, args.density)))
        if crun:
            if "density" in skip:
                print(f"== 4. density: {args.density} idle `sleep 3600` containers (crun only)")
            section(b, "crun-density", lambda: density_crun(b, args.density))
    except (BenchError, ContainerRuntimeError, OSError) as exc:
        b.problems.append(f"set-up failed: {type(exc).__name__}: {exc}")
    finally:
        final_cleanup(b)
        for problem in b.problems:
            print(f"PROBLEM: {problem}")
        print(
            f"done in {time.monotonic() - began:.0f} s; load average {common.loadavg()}; "
            f"cleanup {'clean' if not b.problems else 'with problems (above)'}",
            flush=True,
        )
    return 1 if b.problems else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
