"""What the OCI runtime's first child does, still root, before it creates a container's
user namespace: stage the rootfs and bind sources where the namespace's root can reach
them, and become the host uid that root maps to (so that the namespace is owned by it)."""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

from runtime import linux


class UsernsError(Exception):
    pass


# Where the rootfs and bind sources are staged, in the first child's own mount namespace:
# the first of these folders that holds nothing the children still need by path.
STAGING_CANDIDATES = ("/run", "/mnt", "/srv", "/media", "/tmp")


def stage_sources(rootfs: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Make the rootfs and every bind source reachable by the user namespace's root.

    That root is an unprivileged host uid: the folders on the way to the rootfs (a runtime's
    state folders are root's, mode 0700) would refuse it. So, still root, in a mount
    namespace of our own (a slave of the host's: nothing propagates back), we bind each
    source onto a fresh tmpfs at a folder everyone can search, and use those paths. The
    container's mount namespace is a copy of this one; the host never sees these mounts.
    Returns the staged rootfs and a copy of ``config`` whose binds name staged sources."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    base = os.path.dirname(rootfs)
    mounts = [dict(m) for m in config.get("mounts") or []]
    binds = [m for m in mounts if _is_bind(m)]
    sources: list[str] = [rootfs]
    for m in binds:
        source = str(m.get("source") or "")
        sources.append(source if os.path.isabs(source) else os.path.join(base, source))
    fds: list[int] = []
    try:
        for source in sources:
            try:
                fds.append(os.open(source, os.O_PATH | os.O_CLOEXEC))
            except OSError:
                fds.append(-1)  # the rootfs builder reports a missing source
        stage = _staging_dir(config)
        linux.mount("tmpfs", stage, "tmpfs", _STAGE_FLAGS, "mode=755,size=64k,nr_inodes=4096")
        staged = []
        for i, fd in enumerate(fds):
            if fd < 0:
                staged.append(sources[i])
                continue
            target = os.path.join(stage, str(i))
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target, 0o755)
            else:
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            linux.mount(f"/proc/self/fd/{fd}", target, None, linux.MS_BIND | linux.MS_REC)
            staged.append(target)
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
    for m, source in zip(binds, staged[1:], strict=True):
        m["source"] = source
    return staged[0], {**config, "mounts": mounts}


_STAGE_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def _is_bind(mount: dict[str, Any]) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def _staging_dir(config: dict[str, Any]) -> str:
    """A folder to cover with the staging tmpfs: not above anything we still reach by path
    (our own modules, hooks; cgroup and device paths are elsewhere on every usual host; the
    sources are already open)."""
    needed = [*sys.path, sys.prefix]
    for hook_list in (config.get("hooks") or {}).values():
        needed += [str(h.get("path", "")) for h in hook_list or []]
    for candidate in STAGING_CANDIDATES:
        if not os.path.isdir(candidate) or os.path.islink(candidate):
            continue
        if not any(p == candidate or p.startswith(candidate + "/") for p in needed if p):
            return candidate
    raise UsernsError(f"no folder to stage the rootfs in: all of {STAGING_CANDIDATES} are in use")


def owner(config: dict[str, Any]) -> tuple[int, int] | None:
    """The host uid and gid the user namespace's root maps to, when not root's."""
    lnx = config.get("linux") or {}
    uid, gid = _host_id(lnx.get("uidMappings")), _host_id(lnx.get("gidMappings"))
    if not uid or gid is None:
        return None
    return uid, gid


def become_owner(config: dict[str, Any]) -> None:
    """Become the host uid the user namespace's root maps to, to create the namespace as
    it, not as root: per-user kernel limits (inotify instances and watches, pipe buffers,
    message queue bytes) are charged up the namespace tree to the namespace's owner, so a
    namespace owned by root could exhaust them for every root process of the host."""
    ids = owner(config)
    if ids is None or os.geteuid() != 0:
        return
    uid, gid = ids
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    linux.set_dumpable(False)  # a change of credentials may reset it


def _host_id(mappings: list[dict[str, Any]] | None) -> int | None:
    """The host id the namespace's id 0 maps to."""
    for m in mappings or []:
        first, size = int(m["containerID"]), int(m["size"])
        if first <= 0 < first + size:
            return int(m["hostID"]) - first
    return None
