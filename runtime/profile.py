"""The engine's default security profile, in one place: capabilities, seccomp, masked and
read-only paths, mounts, limits. Every container the engine creates starts from here; a
stricter or looser profile is a different ``Profile`` value, never an edit elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.oci.spec import DEFAULT_CAPABILITIES
from runtime.oci.spec.default import MASKED_PATHS, READONLY_PATHS

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """Defaults for containers; sizes in bytes, ``None`` = unlimited."""

    capabilities: tuple[str, ...] = tuple(DEFAULT_CAPABILITIES)
    no_new_privileges: bool = True
    seccomp: bool = True
    masked_paths: tuple[str, ...] = tuple(MASKED_PATHS)
    readonly_paths: tuple[str, ...] = tuple(READONLY_PATHS)
    pids_limit: int = 1024
    memory: int | None = None
    nofile: int = 1024
    shm_size: int = 64 * MIB
    tmp_size: int | None = None
    dev_size: int = 64 * 1024
    # ping without CAP_NET_RAW, as Docker allows (the network namespace is the container's).
    sysctls: dict[str, str] = field(
        default_factory=lambda: {"net.ipv4.ping_group_range": "0 2147483647"}
    )

    def seccomp_profile(self) -> dict[str, Any] | None:
        if not self.seccomp:
            return None
        from runtime.oci.seccomp import default_profile

        return default_profile()


DEFAULT_PROFILE = Profile()


def base_mounts(profile: Profile) -> list[dict[str, Any]]:
    """The pseudo-filesystems of every container: all writable ones nosuid,nodev."""
    no_exec = ["nosuid", "noexec", "nodev"]

    def mount(destination: str, fstype: str, source: str, options: list[str]) -> dict[str, Any]:
        return {"destination": destination, "type": fstype, "source": source, "options": options}

    mounts = [
        mount("/proc", "proc", "proc", list(no_exec)),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            ["nosuid", "noexec", "strictatime", "mode=755", f"size={profile.dev_size}"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", [*no_exec, "mode=1777", f"size={profile.shm_size}"]),
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
                ["nosuid", "nodev", "mode=1777", f"size={profile.tmp_size}"],
            )
        )
    return mounts
