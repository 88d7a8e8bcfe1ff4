"""The fixed name tables of the Linux ABI that config.json and the CLI refer to by name:
capabilities, signals and resource limits, plus the engine's default capability set.
"""

from __future__ import annotations

import resource
import signal

from runtime.errors import InvalidSpec

# Numbers from linux/capability.h; CAP_CHECKPOINT_RESTORE (40) is the last one as of Linux 6.x.
CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# Docker's default set without NET_RAW (ICMP/ARP spoofing), MKNOD, AUDIT_WRITE and SETFCAP:
# what the engine grants a container built from an image unless told otherwise.
DEFAULT_CAPABILITIES: list[str] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
]

# Every name the C library knows, aliases (SIGIOT, SIGCLD, SIGPOLL) included.
SIGNALS: dict[str, int] = {name: int(sig) for name, sig in signal.Signals.__members__.items()}

RLIMITS: dict[str, int] = {
    "RLIMIT_AS": resource.RLIMIT_AS,
    "RLIMIT_CORE": resource.RLIMIT_CORE,
    "RLIMIT_CPU": resource.RLIMIT_CPU,
    "RLIMIT_DATA": resource.RLIMIT_DATA,
    "RLIMIT_FSIZE": resource.RLIMIT_FSIZE,
    # Python's resource module leaves this one out; 10 in asm-generic/resource.h.
    "RLIMIT_LOCKS": 10,
    "RLIMIT_MEMLOCK": resource.RLIMIT_MEMLOCK,
    "RLIMIT_MSGQUEUE": resource.RLIMIT_MSGQUEUE,
    "RLIMIT_NICE": resource.RLIMIT_NICE,
    "RLIMIT_NOFILE": resource.RLIMIT_NOFILE,
    "RLIMIT_NPROC": resource.RLIMIT_NPROC,
    "RLIMIT_RSS": resource.RLIMIT_RSS,
    "RLIMIT_RTPRIO": resource.RLIMIT_RTPRIO,
    "RLIMIT_RTTIME": resource.RLIMIT_RTTIME,
    "RLIMIT_SIGPENDING": resource.RLIMIT_SIGPENDING,
    "RLIMIT_STACK": resource.RLIMIT_STACK,
}


def parse_signal(text: str) -> int:
    """A signal number from "TERM", "SIGTERM", "sigterm", "15" or "RTMIN+3" (as `kill` takes)."""
    raw = text.strip()
    if raw.isascii() and raw.isdigit():
        number = int(raw)
        if 1 <= number <= signal.SIGRTMAX:
            return number
        raise InvalidSpec("signal", f"signal number {number} is out of range 1-{signal.SIGRTMAX:d}")
    name = raw.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    realtime = _realtime_signal(name)
    if realtime is None:
        raise InvalidSpec("signal", f"unknown signal {text!r}")
    return realtime


def _realtime_signal(name: str) -> int | None:
    """SIGRTMIN+n and SIGRTMAX-n, counted from the C library's bounds (34 and 64 on glibc)."""
    low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    for base, sign, start in (("SIGRTMIN+", 1, low), ("SIGRTMAX-", -1, high)):
        offset = name.removeprefix(base)
        if offset != name and offset.isascii() and offset.isdigit():
            number = start + sign * int(offset)
            return number if low <= number <= high else None
    return None
