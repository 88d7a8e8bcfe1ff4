"""The config.json that ``playground spec`` writes: the shape of ``runc spec``, hardened
(fewer capabilities, more masked paths, a pids limit, a seccomp filter) but still a shell.
"""

from __future__ import annotations

from typing import Any

OCI_VERSION = "1.1.0"

# runc's capabilities minus CAP_AUDIT_WRITE: enough for a shell that may signal its children
# and serve on port 80.
_SHELL_CAPABILITIES = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]

# runc's list plus the ones Docker masks since: powercap leaks energy counters (Platypus,
# CVE-2020-8694) and /proc/interrupts leaks other tenants' device activity.
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/devices/virtual/tpm",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

_NO_EXEC = ["nosuid", "noexec", "nodev"]


def _mounts() -> list[dict[str, Any]]:
    def mount(destination: str, fstype: str, source: str, options: list[str]) -> dict[str, Any]:
        return {"destination": destination, "type": fstype, "source": source, "options": options}

    return [
        mount("/proc", "proc", "proc", [*_NO_EXEC]),
        mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", [*_NO_EXEC, "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", [*_NO_EXEC]),
        mount("/sys", "sysfs", "sysfs", [*_NO_EXEC, "ro"]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", [*_NO_EXEC, "relatime", "ro"]),
    ]


def _process() -> dict[str, Any]:
    return {
        "terminal": True,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {
            "bounding": list(_SHELL_CAPABILITIES),
            "effective": list(_SHELL_CAPABILITIES),
            "permitted": list(_SHELL_CAPABILITIES),
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def _linux() -> dict[str, Any]:
    # Imported here so that this module loads even where the seccomp compiler cannot.
    from runtime.oci.seccomp import default_profile

    return {
        "namespaces": [
            {"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount", "cgroup")
        ],
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
        "resources": {
            "devices": [{"allow": False, "access": "rwm"}],
            "pids": {"limit": 1024},
        },
        "seccomp": default_profile(),
    }


def default_spec() -> dict[str, Any]:
    """A fresh dict each call; callers may change it."""
    return {
        "ociVersion": OCI_VERSION,
        "process": _process(),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "playground",
        "mounts": _mounts(),
        "linux": _linux(),
    }
