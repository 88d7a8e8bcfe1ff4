"""The engine's default security profile, in one place: capabilities, seccomp, masked and
read-only paths, mounts, limits. Every container the engine creates starts from here; a
stricter or looser profile is a different ``Profile`` value, never an edit elsewhere.

What each default protects against, and the attack that proves it, is in ``docs/security.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.oci.spec import DEFAULT_CAPABILITIES
from runtime.oci.spec.default import MASKED_PATHS, READONLY_PATHS

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1024 * 1024
GIB = 1024 * MIB

# Beyond runc's and Docker's lists: root-only (0400) files that map the kernel heap and free
# memory for an exploit (slab caches, vmalloc areas, free pages by migrate type).
EXTRA_MASKED_PATHS = ("/proc/slabinfo", "/proc/vmallocinfo", "/proc/pagetypeinfo")


@dataclass(frozen=True)
class Profile:
    """Defaults for containers; sizes in bytes, ``None`` = unlimited (or: not mounted)."""

    capabilities: tuple[str, ...] = tuple(DEFAULT_CAPABILITIES)
    no_new_privileges: bool = True
    seccomp: bool = True
    masked_paths: tuple[str, ...] = (*MASKED_PATHS, *EXTRA_MASKED_PATHS)
    readonly_paths: tuple[str, ...] = tuple(READONLY_PATHS)
    pids_limit: int = 1024
    # memory.limit_in_bytes and memory.memsw.limit_in_bytes alike: no swap on top.
    memory: int | None = 512 * MIB
    cpus: float | None = 1.0
    nofile: int = 1024
    # No core files: with a piped core_pattern the host's helper would write them, on the host.
    core: int = 0
    # Under host-wide memory pressure the kernel kills a container's processes before the
    # host's services; a container can raise its own value but never lower it.
    oom_score_adj: int = 500
    shm_size: int = 64 * MIB
    shm_inodes: int = 16384
    # /tmp is the writable layer's (limited below) unless given its own tmpfs here.
    tmp_size: int | None = None
    tmp_inodes: int = 16384
    dev_size: int = 64 * 1024
    dev_inodes: int = 1024
    # devpts "max": ptys of one container. Every devpts but the host's shares
    # kernel.pty.max - kernel.pty.reserve (3072 by default) ptys.
    ptys: int = 64
    # The writable layer (overlayfs upper dir, and /etc/hosts & co) on its own ext4 of this
    # size and inode count; None keeps it on the engine root's file system, unlimited.
    rootfs_size: int | None = 2 * GIB
    rootfs_inodes: int = 131072
    # Volumes a container's ``-v`` creates (anonymous ones, and named ones that do not exist
    # yet) get a file system of this size of their own: filling one gives ENOSPC inside it,
    # never the host's disk full. None: unlimited folders. ``volume create`` without
    # ``--size`` stays unlimited, as in Docker: that is the operator's choice.
    volume_size: int | None = 1 * GIB
    # A user namespace per container: its root is an unprivileged host uid, the first of a
    # range of ``userns_size`` uids and gids distinct from every other container's
    # (``runtime.container.idmap``); layers and volumes are shared through idmapped mounts.
    userns: bool = True
    userns_size: int = 65536
    # Other sysctls of the container's own namespaces (see ``all_sysctls``).
    sysctls: dict[str, str] = field(default_factory=dict)

    def all_sysctls(self) -> dict[str, str]:
        """ping without CAP_NET_RAW, as Docker allows (the network namespace is the
        container's), for every group the container has: the range is read in the
        container's user namespace, where only its own ids exist."""
        last_gid = self.userns_size - 1 if self.userns else 2147483647
        return {"net.ipv4.ping_group_range": f"0 {last_gid}", **self.sysctls}

    def seccomp_profile(self) -> dict[str, Any] | None:
        if not self.seccomp:
            return None
        from runtime.oci.seccomp import default_profile

        return default_profile()

    def rlimits(self) -> list[dict[str, Any]]:
        return [
            {"type": "RLIMIT_NOFILE", "soft": self.nofile, "hard": self.nofile},
            {"type": "RLIMIT_CORE", "soft": self.core, "hard": self.core},
        ]


DEFAULT_PROFILE = Profile()


def _tmpfs_options(size: int, inodes: int) -> list[str]:
    return [f"size={size}", f"nr_inodes={inodes}"]


def base_mounts(profile: Profile) -> list[dict[str, Any]]:
    """The pseudo-filesystems of every container: all writable ones nosuid,nodev (but /dev
    and /dev/pts, which hold the device nodes; nothing can create one there without
    CAP_MKNOD, and the devices cgroup allows only the standard ones)."""
    no_exec = ["nosuid", "noexec", "nodev"]

    def mount(destination: str, fstype: str, source: str, options: list[str]) -> dict[str, Any]:
        return {"destination": destination, "type": fstype, "source": source, "options": options}

    dev = ["nosuid", "noexec", "strictatime", "mode=755"]
    pts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
    mounts = [
        mount("/proc", "proc", "proc", list(no_exec)),
        mount("/dev", "tmpfs", "tmpfs", dev + _tmpfs_options(profile.dev_size, profile.dev_inodes)),
        mount("/dev/pts", "devpts", "devpts", [*pts, f"max={profile.ptys}"]),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            [*no_exec, "mode=1777", *_tmpfs_options(profile.shm_size, profile.shm_inodes)],
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", list(no_exec)),
        mount("/sys", "sysfs", "sysfs", [*no_exec, "ro"]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", [*no_exec, "relatime", "ro"]),
    ]
    if profile.tmp_size is not None:
        mounts.append(
            mount(
                "/tmp",
                "tmpfs",
                "tmpfs",
                [
                    "nosuid",
                    "nodev",
                    "mode=1777",
                    *_tmpfs_options(profile.tmp_size, profile.tmp_inodes),
                ],
            )
        )
    return mounts
