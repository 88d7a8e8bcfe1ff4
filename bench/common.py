"""Helpers shared by the benchmarks: statistics, OCI bundles, a private mount namespace in which
crun works on hybrid cgroup hosts, and reaping of orphans handed to the bench (subreaper).

Nothing here changes the host: mounts are made only inside the bench's own mount namespace
(a slave of the host's, so nothing propagates out) and vanish with it.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CLONE_NEWNS = 0x00020000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
UNIFIED = "/sys/fs/cgroup/unified"

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(ret, f"mount {target}")


def umount(target: str) -> None:
    _check(_libc.umount2(_b(target), MNT_DETACH), f"umount {target}")


# -- statistics ---------------------------------------------------------------------------------


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(len(ordered) * 0.9) - 1)]


def line(name: str, samples: list[float], width: int = 46, note: str = "") -> str:
    """One contender: median and p90 in milliseconds."""
    if not samples:
        return f"{name:{width}s} no samples{note}"
    return (
        f"{name:{width}s} median {statistics.median(samples) * 1000:8.2f} ms   "
        f"p90 {p90(samples) * 1000:8.2f} ms   (n={len(samples)}){note}"
    )


# -- bundles ------------------------------------------------------------------------------------


def build_rootfs(dest: Path) -> Path:
    from tests.conftest import build_busybox_rootfs

    return build_busybox_rootfs(dest)


def make_bundle(
    base: Path,
    args: list[str],
    *,
    terminal: bool = False,
    name: str = "bundle",
    rootfs: Path | None = None,
) -> Path:
    """An OCI bundle from runc's default spec (ours: ``runtime.oci.spec``) running ``args``.

    Without ``rootfs`` the bundle gets its own busybox rootfs; with it, ``root.path`` points
    there (read-only), so several bundles share one rootfs.
    """
    from runtime.oci import spec

    bundle = base / name
    bundle.mkdir(parents=True, exist_ok=True)
    if rootfs is None:
        build_rootfs(bundle / "rootfs")
    config: dict[str, Any] = spec.default_spec()
    config["process"]["terminal"] = terminal
    config["process"]["args"] = list(args)
    if rootfs is not None:
        config["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


# -- the bench's own mount namespace ------------------------------------------------------------


def hybrid_controllers() -> str:
    """The controllers of a hybrid host's cgroup2 mount, which make crun refuse to run.

    crun (1.8) stops with "cgroups in hybrid mode not supported, drop all controllers from
    cgroupv2" when /sys/fs/cgroup is v1 and /sys/fs/cgroup/unified/cgroup.controllers is not
    empty (hugetlb here, which no v1 hierarchy holds).
    """
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # pure cgroup v2
        return ""
    try:
        with open(f"{UNIFIED}/cgroup.controllers") as f:
            return f.read().strip()
    except OSError:
        return ""


def enter_private_mount_namespace() -> None:
    """Move this (single-threaded) process into a new mount namespace, a slave of the host's."""
    if threading.active_count() != 1:
        raise RuntimeError("enter the private mount namespace before starting threads")
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_SLAVE)


def hide_hybrid_controllers(scratch: Path) -> str | None:
    """In this process's private mount namespace, make the cgroup2 controller list read empty
    (a bind mount of an empty file), so that crun runs; the mount dies with the namespace.
    Returns a note for the output, or None when nothing had to be done."""
    controllers = hybrid_controllers()
    if not controllers:
        return None
    empty = scratch / "empty-cgroup.controllers"
    empty.write_text("")
    mount(str(empty), f"{UNIFIED}/cgroup.controllers", None, MS_BIND)
    return (
        f"note: hybrid cgroups with cgroup2 controllers ({controllers}): crun refuses them, so "
        f"the bench runs in a private mount namespace where {UNIFIED}/cgroup.controllers "
        "reads empty"
    )


# -- children -----------------------------------------------------------------------------------


def set_subreaper() -> None:
    """Orphans (detached containers, conmon) become our children, so we can reap them."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans() -> int:
    """Reap every zombie child of ours. Call it only between (not during) subprocess waits."""
    me = os.getpid()
    reaped = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
                reaped += 1
            except ChildProcessError:
                pass
    return reaped


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Reap ``pid`` if it is our child, else poll until it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return True
        time.sleep(0.01)
    return False


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
