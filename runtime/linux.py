"""The only module that calls libc through ctypes: mounts, namespaces, prctl, capabilities
and the raw system calls the standard library lacks (pivot_root, openat2, seccomp, bpf).

Every wrapper raises ``OSError(errno, message, path)`` built from ``ctypes.get_errno()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct

# The soname, not ctypes.util.find_library: that runs `ldconfig -p` and costs milliseconds.
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

# clone(2) / unshare(2) / setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# memfd_create(2) and file seals
MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008

# seccomp(2)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1

_MACHINE = os.uname().machine
_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "pivot_root": 155,
        "seccomp": 317,
        "bpf": 321,
        "openat2": 437,
        "close_range": 436,
        "pidfd_open": 434,
        "pidfd_send_signal": 424,
        "capget": 125,
        "capset": 126,
        "rt_sigaction": 13,
    },
    "aarch64": {
        "pivot_root": 41,
        "seccomp": 277,
        "bpf": 280,
        "openat2": 437,
        "close_range": 436,
        "pidfd_open": 434,
        "pidfd_send_signal": 424,
        "capget": 90,
        "capset": 91,
        "rt_sigaction": 134,
    },
}


def _nr(name: str) -> int:
    try:
        return _SYSCALLS[_MACHINE][name]
    except KeyError:
        raise OSError(38, f"system call {name} is not known on {_MACHINE}") from None


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(
        _libc.syscall(_nr("pivot_root"), _b(new_root), _b(put_old)),
        "pivot_root",
        new_root,
    )


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def setdomainname(name: str) -> None:
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname", name)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def set_child_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_dumpable(value: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if value else 0)


def set_pdeathsig(signum: int) -> None:
    prctl(PR_SET_PDEATHSIG, signum)


# Capabilities: version 3 headers, two 32-bit words per set.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(
        _libc.syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data)),
        "capset",
    )


def capbset_drop(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap)


def capbset_read(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def ambient_raise(cap: int) -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def ambient_clear() -> None:
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def last_cap(proc: str = "/proc") -> int:
    with open(f"{proc}/sys/kernel/cap_last_cap") as f:
        return int(f.read())


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """Open ``path`` relative to ``dirfd`` with ``RESOLVE_*`` constraints; returns an fd."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(
        _libc.syscall(
            _nr("openat2"),
            ctypes.c_int(dirfd),
            _b(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        ),
        "openat2",
        path,
    )


def memfd_create(name: str, flags: int = MFD_CLOEXEC) -> int:
    return _check(_libc.memfd_create(_b(name), ctypes.c_uint(flags)), "memfd_create", name)


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(
        _libc.syscall(
            _nr("close_range"), ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags)
        ),
        "close_range",
    )


CLOSE_RANGE_CLOEXEC = 1 << 2


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """Install a classic-BPF seccomp program (``program`` is ``struct sock_filter[]``)."""
    count = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))

    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    _check(
        _libc.syscall(
            _nr("seccomp"),
            ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
            ctypes.c_uint(flags),
            ctypes.byref(prog),
        ),
        "seccomp",
    )


def bpf(cmd: int, attr: bytes) -> int:
    """The bpf(2) system call with a raw ``union bpf_attr`` buffer."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    return _check(
        _libc.syscall(_nr("bpf"), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr))),
        "bpf",
    )


def pidfd_open(pid: int) -> int:
    return _check(
        _libc.syscall(_nr("pidfd_open"), ctypes.c_int(pid), ctypes.c_uint(0)), "pidfd_open"
    )


def pidfd_send_signal(pidfd: int, signum: int) -> None:
    _check(
        _libc.syscall(
            _nr("pidfd_send_signal"),
            ctypes.c_int(pidfd),
            ctypes.c_int(signum),
            None,
            ctypes.c_uint(0),
        ),
        "pidfd_send_signal",
    )


class _KernelSigaction(ctypes.Structure):
    # The kernel's struct sigaction (not glibc's): handler, flags, restorer, mask.
    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("restorer", ctypes.c_void_p),
        ("mask", ctypes.c_ulong),
    ]


def signal_default(signum: int) -> None:
    """Set ``signum`` to SIG_DFL with the raw system call: glibc's sigaction refuses the
    signals it reserves for itself (32 and 33), which an ignoring parent still hands on."""
    action = _KernelSigaction(None, 0, None, 0)
    _check(
        _libc.syscall(
            _nr("rt_sigaction"),
            ctypes.c_int(signum),
            ctypes.byref(action),
            None,
            ctypes.c_size_t(8),
        ),
        f"rt_sigaction({signum})",
    )


def pack_u64(*values: int) -> bytes:
    return struct.pack(f"={len(values)}Q", *values)


# --- runtime.oci.cgroups (devices_bpf): eBPF programs for the cgroup v2 devices allowlist ---
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
# The kernel writes fields back into bpf_attr (prog_cnt, and since 6.x a revision at offset 56),
# so query attributes live in a buffer larger than any field the kernel may touch.
_BPF_ATTR_SIZE = 128


def bpf_prog_load(prog_type: int, insns: bytes, license: str, name: str = "") -> int:
    """BPF_PROG_LOAD ``insns`` (``struct bpf_insn[]``); returns the program fd.

    Loads without a verifier log first (faster); on failure loads again with one so the
    ``OSError`` message carries the verifier's explanation.
    """
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    for log_size in (0, 65536):
        log = ctypes.create_string_buffer(log_size)
        attr = struct.pack(
            "=IIQQIIQII16s",
            prog_type,
            len(insns) // 8,
            ctypes.addressof(code),
            ctypes.addressof(lic),
            1 if log_size else 0,
            log_size,
            ctypes.addressof(log) if log_size else 0,
            0,
            0,
            name.encode()[:15],
        )
        buf = ctypes.create_string_buffer(attr, _BPF_ATTR_SIZE)
        fd = int(_libc.syscall(_nr("bpf"), ctypes.c_int(BPF_PROG_LOAD), buf, _BPF_ATTR_SIZE))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if log_size:
            text = log.value.decode(errors="replace").strip()
            raise OSError(err, f"bpf prog load: {os.strerror(err)}: {text}")
    raise AssertionError("unreachable")


def bpf_prog_query(target_fd: int, attach_type: int, max_progs: int = 64) -> list[int]:
    """BPF_PROG_QUERY: ids of the programs attached directly to ``target_fd``."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = struct.pack("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids), max_progs)
    buf = ctypes.create_string_buffer(attr, _BPF_ATTR_SIZE)
    _check(
        _libc.syscall(_nr("bpf"), ctypes.c_int(BPF_PROG_QUERY), buf, _BPF_ATTR_SIZE),
        "bpf prog query",
    )
    (count,) = struct.unpack_from("=I", buf.raw, 24)
    return list(ids[: min(count, max_progs)])


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    bpf(BPF_PROG_ATTACH, struct.pack("=IIIII", target_fd, prog_fd, attach_type, flags, 0))


def bpf_prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    bpf(BPF_PROG_DETACH, struct.pack("=IIIII", target_fd, prog_fd, attach_type, 0, 0))


def bpf_prog_get_fd_by_id(prog_id: int) -> int:
    return bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("=III", prog_id, 0, 0))


# --- the new mount API and idmapped mounts ---------------------------------------------------
# Groundwork for user namespaces by default (docs/security.md): an image layer is shared by
# every container and owned by host root; an idmapped clone of it shows each container its
# files as owned by that container's own range of host uids, without copying anything.
# These system calls have the same numbers on every architecture (the generic table).

_MOUNT_API_NR = {
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "mount_setattr": 442,
}
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x00100000
_MOUNT_ATTR_SIZE = 32  # struct mount_attr: attr_set, attr_clr, propagation, userns_fd


def _mount_api(name: str, *args: object, path: str | None = None) -> int:
    return _check(_libc.syscall(ctypes.c_long(_MOUNT_API_NR[name]), *args), name, path)


def open_tree(
    path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, dirfd: int = AT_FDCWD
) -> int:
    """A detached copy of the mount tree at ``path`` (with OPEN_TREE_CLONE); an fd."""
    return _mount_api("open_tree", ctypes.c_int(dirfd), _b(path), ctypes.c_uint(flags), path=path)


def mount_setattr(
    fd: int,
    attr_set: int,
    attr_clr: int = 0,
    propagation: int = 0,
    userns_fd: int = 0,
    flags: int = AT_EMPTY_PATH,
) -> None:
    attr = struct.pack("=QQQQ", attr_set, attr_clr, propagation, userns_fd)
    buf = ctypes.create_string_buffer(attr, _MOUNT_ATTR_SIZE)
    _mount_api("mount_setattr", ctypes.c_int(fd), b"", ctypes.c_uint(flags), buf, _MOUNT_ATTR_SIZE)


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    return _mount_api("fsopen", _b(fstype), ctypes.c_uint(flags), path=fstype)


def fsconfig(
    fd: int, cmd: int, key: str | None = None, value: str | None = None, aux: int = 0
) -> None:
    _mount_api(
        "fsconfig",
        ctypes.c_int(fd),
        ctypes.c_uint(cmd),
        _b(key),
        _b(value),
        ctypes.c_int(aux),
        path=key,
    )


def fsmount(fd: int, attrs: int = 0, flags: int = FSMOUNT_CLOEXEC) -> int:
    return _mount_api("fsmount", ctypes.c_int(fd), ctypes.c_uint(flags), ctypes.c_uint(attrs))


def move_mount(
    from_fd: int, to_path: str, *, from_path: str = "", flags: int = MOVE_MOUNT_F_EMPTY_PATH
) -> None:
    """Attach the detached mount ``from_fd`` at ``to_path``."""
    _mount_api(
        "move_mount",
        ctypes.c_int(from_fd),
        _b(from_path),
        ctypes.c_int(AT_FDCWD),
        _b(to_path),
        ctypes.c_uint(flags),
        path=to_path,
    )


def idmapped_tree(path: str, userns_fd: int) -> int:
    """A detached clone of the mount at ``path`` whose owners read through the id mapping of
    the user namespace ``userns_fd``; an fd (for ``lowerdir+`` or ``move_mount``)."""
    fd = open_tree(path)
    try:
        mount_setattr(fd, MOUNT_ATTR_IDMAP, userns_fd=userns_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def userns_fd(base: int, count: int = 65536) -> int:
    """An fd of a new user namespace mapping 0..count-1 to host ``base``..``base+count-1``
    (uids and gids), owned by ``base``: it exists only to describe the mapping, held by a
    child that leaves at once."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(ready_r)
            os.close(go_w)  # or the read below would wait for our own write end
            os.setresgid(base, base, base)
            os.setresuid(base, base, base)
            ok = _libc.unshare(CLONE_NEWUSER) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(1, "userns_fd: the child could not create a user namespace")
        for name, text in (
            ("uid_map", f"0 {base} {count}\n"),
            ("setgroups", "deny"),
            ("gid_map", f"0 {base} {count}\n"),
        ):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        # Wake the child explicitly: a process forked meanwhile by another thread may hold a
        # copy of go_w, and the child would never see end of file.
        with contextlib.suppress(OSError):
            os.write(go_w, b"1")
        os.close(go_w)
        os.waitpid(pid, 0)
