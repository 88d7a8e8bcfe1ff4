"""Seccomp: compiles an OCI ``linux.seccomp`` object to a classic-BPF program with libseccomp,
installs a compiled program, and owns Playground's default (hardened) profile.

libseccomp is bound here with ctypes (it is not libc, so this does not belong in
``runtime.linux``). Compilation happens in the engine, ahead of time and cached; the container's
init only makes the one seccomp(2) call, through ``runtime.linux.seccomp_set_filter``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from runtime import linux
from runtime.errors import SeccompError

logger = logging.getLogger(__name__)

# Return values of a seccomp filter (linux/seccomp.h); ERRNO and TRACE carry 16 bits of data.
_ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,  # kill the thread, as runc does
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_ACTIONS_WITH_RET = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
_UNSUPPORTED_ACTIONS = frozenset({"SCMP_ACT_NOTIFY"})
_BAD_ARCH_ACTION = _ACTIONS["SCMP_ACT_KILL_PROCESS"]

# enum scmp_compare (seccomp.h)
_OPS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# seccomp(2) SECCOMP_SET_MODE_FILTER flags that make sense without a notify listener.
FILTER_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

# enum scmp_filter_attr (seccomp.h)
_FLTATR_ACT_BADARCH = 2
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_OPTIMIZE = 8

_MAX_ARGS = 6
_U64 = (1 << 64) - 1
_CACHE_SIZE = 32
_CACHE_FORMAT = 1  # bump when the compiled output for the same config changes


class _Rule(NamedTuple):
    name: str
    action: int
    conditions: tuple[tuple[int, int, int, int], ...]  # (index, op, datum_a, datum_b), ANDed


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


class _Libseccomp:
    """The dozen libseccomp calls we need; every method returns plain ints."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path, use_errno=True)
        vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        lib.seccomp_init.argtypes, lib.seccomp_init.restype = [u32], vp
        lib.seccomp_release.argtypes, lib.seccomp_release.restype = [vp], None
        lib.seccomp_attr_set.argtypes, lib.seccomp_attr_set.restype = [vp, cint, u32], cint
        lib.seccomp_arch_add.argtypes, lib.seccomp_arch_add.restype = [vp, u32], cint
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_resolve_name.restype = u32
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.restype = cint
        lib.seccomp_rule_add_array.argtypes = [vp, u32, cint, ctypes.c_uint, ctypes.c_void_p]
        lib.seccomp_rule_add_array.restype = cint
        lib.seccomp_export_bpf.argtypes, lib.seccomp_export_bpf.restype = [vp, cint], cint
        lib.seccomp_version.argtypes, lib.seccomp_version.restype = [], ctypes.POINTER(_Version)
        self._lib = lib
        v = lib.seccomp_version().contents
        self.version = f"{v.major}.{v.minor}.{v.micro}"

    def init(self, default_action: int) -> int:
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise SeccompError(f"libseccomp rejected default action {default_action:#x}")
        return int(ctx)

    def release(self, ctx: int) -> None:
        self._lib.seccomp_release(ctx)

    def attr_set(self, ctx: int, attr: int, value: int) -> int:
        return int(self._lib.seccomp_attr_set(ctx, attr, value))

    def arch_add(self, ctx: int, token: int) -> int:
        return int(self._lib.seccomp_arch_add(ctx, token))

    def arch_token(self, name: str) -> int:
        return int(self._lib.seccomp_arch_resolve_name(name.encode()))

    def resolve(self, name: str) -> int:
        """The native syscall number, a negative pseudo-number for other arches, or -1."""
        return int(self._lib.seccomp_syscall_resolve_name(name.encode()))

    def rule_add(self, ctx: int, action: int, nr: int, conditions: Sequence[_ArgCmp]) -> int:
        array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
        return int(self._lib.seccomp_rule_add_array(ctx, action, nr, len(conditions), array))

    def export_bpf(self, ctx: int) -> bytes:
        # A memfd rather than a pipe: a big filter would fill a pipe and block the writer.
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = int(self._lib.seccomp_export_bpf(ctx, fd))
            if rc < 0:
                raise SeccompError(f"exporting filter: {os.strerror(-rc)}")
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)


@functools.cache
def _lib() -> _Libseccomp:
    # The soname, not ctypes.util.find_library, which runs `ldconfig -p` (milliseconds).
    try:
        return _Libseccomp("libseccomp.so.2")
    except OSError as exc:
        raise SeccompError(f"cannot load libseccomp.so.2: {exc}") from exc


# --- validation: OCI JSON -> rules ----------------------------------------------------------


def _ret(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise SeccompError(f"{field} must be an integer from 0 to 65535, not {value!r}")
    return value


def _action(name: object, ret: object, field: str) -> int:
    if isinstance(name, str) and name in _UNSUPPORTED_ACTIONS:
        raise SeccompError(f"{field}: action {name} is not supported")
    if not isinstance(name, str) or name not in _ACTIONS:
        raise SeccompError(f"{field}: unknown action {name!r}")
    if name not in _ACTIONS_WITH_RET:
        if ret is not None:
            raise SeccompError(f"{field}: an errno return is only valid with errno or trace")
        return _ACTIONS[name]
    return _ACTIONS[name] | (errno.EPERM if ret is None else _ret(ret, f"{field} errnoRet"))


def _condition(arg: object, field: str) -> tuple[int, int, int, int]:
    if not isinstance(arg, Mapping):
        raise SeccompError(f"{field} must be an object")
    index, op = arg.get("index"), arg.get("op")
    value, value_two = arg.get("value", 0), arg.get("valueTwo", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _MAX_ARGS:
        raise SeccompError(f"{field}: argument index {index!r} is not 0 to 5")
    if not isinstance(op, str) or op not in _OPS:
        raise SeccompError(f"{field}: unknown comparison {op!r}")
    for v in (value, value_two):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U64:
            raise SeccompError(f"{field}: value {v!r} is not an unsigned 64-bit integer")
    # For SCMP_CMP_MASKED_EQ the OCI "value" is the mask and "valueTwo" the datum, as in
    # libseccomp's datum_a/datum_b.
    return (index, _OPS[op], value, value_two)


def _condition_sets(args: object, field: str) -> list[tuple[tuple[int, int, int, int], ...]]:
    """runc's semantics: conditions are ANDed, unless one argument is compared more than once;
    then each condition is a rule of its own (ORed), which libseccomp can express."""
    if args is None:
        return [()]
    if not isinstance(args, list):
        raise SeccompError(f"{field} must be a list")
    conds = [_condition(a, f"{field}[{i}]") for i, a in enumerate(args)]
    indexes = [c[0] for c in conds]
    if len(set(indexes)) < len(indexes):
        return [(c,) for c in conds]
    return [tuple(conds)]


def _rules(config: Mapping[str, Any], default_action: int) -> list[_Rule]:
    entries = config.get("syscalls") or []
    if not isinstance(entries, list):
        raise SeccompError("syscalls must be a list")
    rules: list[_Rule] = []
    for i, entry in enumerate(entries):
        field = f"syscalls[{i}]"
        if not isinstance(entry, Mapping):
            raise SeccompError(f"{field} must be an object")
        for docker_only in ("includes", "excludes"):
            if docker_only in entry:
                raise SeccompError(f"{field}: {docker_only!r} is a docker profile field, not oci")
        names = entry.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise SeccompError(f"{field}: names must be a list of syscall names")
        action = _action(entry.get("action"), entry.get("errnoRet"), field)
        condition_sets = _condition_sets(entry.get("args"), f"{field}.args")
        if action == default_action:
            continue  # libseccomp refuses rules that repeat the default (EACCES)
        for name in names:
            rules.extend(_Rule(name, action, conds) for conds in condition_sets)
    return rules


def filter_flags(names: Sequence[str] | None) -> int:
    """Translate OCI ``flags`` names to seccomp(2) flag bits."""
    bits = 0
    for name in names or ():
        if name not in FILTER_FLAGS:
            raise SeccompError(f"unsupported filter flag {name!r}")
        bits |= FILTER_FLAGS[name]
    return bits


def _arch_tokens(lib: _Libseccomp, names: object) -> list[int]:
    if names is None:
        return []
    if not isinstance(names, list):
        raise SeccompError("architectures must be a list")
    tokens = []
    for name in names:
        token = 0
        if isinstance(name, str) and name.startswith("SCMP_ARCH_"):
            token = lib.arch_token(name.removeprefix("SCMP_ARCH_").lower())
        if not token:
            raise SeccompError(f"unknown architecture {name!r}")
        tokens.append(token)
    return tokens


def _validate_top_level(config: Mapping[str, Any]) -> int:
    if config.get("listenerPath") or config.get("listenerMetadata"):
        raise SeccompError("a notify listener (listenerPath) is not supported")
    filter_flags(config.get("flags"))
    return _action(config.get("defaultAction"), config.get("defaultErrnoRet"), "defaultAction")


# --- compiling ----------------------------------------------------------------------------


@contextlib.contextmanager
def _filter(lib: _Libseccomp, default_action: int) -> Iterator[int]:
    ctx = lib.init(default_action)
    try:
        yield ctx
    finally:
        lib.release(ctx)


def _add_rule(lib: _Libseccomp, ctx: int, rule: _Rule) -> None:
    nr = lib.resolve(rule.name)
    if nr == -1:
        logger.debug("seccomp: skipping %s, unknown to libseccomp %s", rule.name, lib.version)
        return
    conds = [_ArgCmp(*c) for c in rule.conditions]
    rc = lib.rule_add(ctx, rule.action, nr, conds)
    if rc in (-errno.EEXIST, -errno.EINVAL, -errno.EACCES):
        # Same syscall listed again with a conflicting action or condition: the first rule wins.
        logger.debug("seccomp: skipping conflicting rule for %s: %s", rule.name, os.strerror(-rc))
    elif rc < 0:
        raise SeccompError(f"adding rule for syscall {rule.name}: {os.strerror(-rc)}")


def _compile(config: Mapping[str, Any]) -> bytes:
    default_action = _validate_top_level(config)
    rules = _rules(config, default_action)
    lib = _lib()
    arches = _arch_tokens(lib, config.get("architectures"))
    with _filter(lib, default_action) as ctx:
        # The runtime sets no_new_privs itself; the filter is installed from the exported BPF.
        for attr, value in ((_FLTATR_CTL_NNP, 0), (_FLTATR_ACT_BADARCH, _BAD_ARCH_ACTION)):
            rc = lib.attr_set(ctx, attr, value)
            if rc < 0:
                raise SeccompError(f"setting filter attribute {attr}: {os.strerror(-rc)}")
        # A binary tree of syscall numbers: each call runs fewer instructions, and the kernel
        # prepares the filter faster. libseccomp older than 2.5 lacks it; that is fine.
        if lib.attr_set(ctx, _FLTATR_CTL_OPTIMIZE, 2) < 0:
            logger.debug("seccomp: libseccomp %s cannot build a binary tree", lib.version)
        for token in arches:
            rc = lib.arch_add(ctx, token)  # the native arch is always in: EEXIST is fine
            if rc < 0 and rc != -errno.EEXIST:
                raise SeccompError(f"adding architecture {token:#x}: {os.strerror(-rc)}")
        for rule in rules:
            _add_rule(lib, ctx, rule)
        return lib.export_bpf(ctx)


_cache: dict[str, bytes] = {}
_cache_lock = threading.Lock()


def _cache_key(config: Mapping[str, Any]) -> str:
    try:
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SeccompError(f"profile is not json: {exc}") from exc
    # The canonical text itself is the key: exact, and no need to load OpenSSL's hashlib.
    return canonical


def _disk_path(cache_dir: str, key: str) -> str:
    import hashlib

    tag = f"{_CACHE_FORMAT}-{platform.machine()}-{_lib().version}"
    return os.path.join(cache_dir, f"{hashlib.sha256(f'{tag}:{key}'.encode()).hexdigest()}.bpf")


def _disk_load(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                logger.debug("seccomp: ignoring %s: not ours, or writable by others", path)
                return None
            program = f.read()
    except OSError:
        return None
    return program if program and len(program) % 8 == 0 else None


def _disk_store(path: str, program: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(program)
        os.replace(tmp, path)
    except OSError as exc:
        logger.debug("seccomp: cannot cache program at %s: %s", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def compile_bpf(config: Mapping[str, Any], *, cache_dir: str | None = None) -> bytes:
    """Compile an OCI ``linux.seccomp`` object to ``struct sock_filter[]`` bytes.

    Programs are cached in memory by a hash of the config's canonical JSON, and also on disk
    under ``cache_dir`` (root-owned, mode 0700: a program there is trusted) when one is given.
    """
    key = _cache_key(config)
    with _cache_lock:
        program = _cache.get(key)
    if program is not None:
        return program
    path = _disk_path(cache_dir, key) if cache_dir else None
    program = _disk_load(path) if path else None
    if program is None:
        started = time.perf_counter()
        program = _compile(config)
        logger.debug(
            "seccomp: compiled %d instructions in %.1f ms",
            len(program) // 8,
            (time.perf_counter() - started) * 1e3,
        )
        if path:
            _disk_store(path, program)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            del _cache[next(iter(_cache))]
        _cache[key] = program
    return program


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def install(program: bytes, flags: Sequence[str] | None = None) -> None:
    """Install ``program`` on the calling thread (all threads with TSYNC).

    The caller has set no_new_privs or holds CAP_SYS_ADMIN. Meant for the container's init just
    before execve: it makes exactly one system call.
    """
    bits = filter_flags(flags)
    if not program or len(program) % 8:
        raise SeccompError(f"program of {len(program)} bytes is not whole bpf instructions")
    try:
        linux.seccomp_set_filter(program, bits)
    except OSError as exc:
        raise SeccompError(f"installing filter: {exc.strerror}") from exc


# --- the default profile ------------------------------------------------------------------

# Docker's unconditional allowlist, less: 32-bit-only calls (their ABIs hit the bad-arch action),
# adjtimex/clock_adjtime, name_to_handle_at, never-implemented epoll_*_old, and socketpair
# (allowed below for AF_UNIX only). Names that this libseccomp does not know yet (statmount,
# mseal, *xattrat, ...) are skipped when compiling.
# Text, not a list literal, which the formatter would spread over 300 lines.
_ALLOWED_TEXT = """
accept accept4 access alarm bind brk cachestat capget capset chdir chmod chown chroot
clock_getres clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup
dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd
eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fallocate fanotify_mark
fchdir fchmod fchmodat fchmodat2 fchown fchownat fcntl fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstatfs fsync ftruncate futex futex_requeue futex_wait futex_waitv
futex_wake futimesat get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid
geteuid getgid getgroups getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresuid getrlimit getrusage getsid getsockname getsockopt gettid
gettimeofday getuid getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents io_setup io_submit ioctl
ioprio_get ioprio_set kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
lchown lgetxattr link linkat listen listmount listxattr listxattrat llistxattr lremovexattr
lseek lsetxattr lstat madvise map_shadow_stack membarrier memfd_create memfd_secret mincore
mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mprotect mq_getsetattr mq_notify mq_open
mq_timedreceive mq_timedsend mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap nanosleep newfstatat open openat openat2 pause pidfd_open pidfd_send_signal
pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages removexattr removexattrat rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile sendmmsg
sendmsg sendto set_robust_list set_thread_area set_tid_address setdomainname setfsgid setfsuid
setgid setgroups sethostname setitimer setpgid setpriority setregid setresgid setresuid
setreuid setrlimit setsid setsockopt setuid setxattr setxattrat shmat shmctl shmdt shmget
shutdown sigaltstack signalfd signalfd4 splice stat statfs statmount statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime
times tkill truncate umask uname unlink unlinkat uretprobe utime utimensat utimes vfork
vmsplice wait4 waitid write writev
"""
_ALLOWED = _ALLOWED_TEXT.split()

_ARCH_ALLOWED: dict[str, list[str]] = {"x86_64": ["arch_prctl"]}  # no modify_ldt
_ARCHITECTURES: dict[str, list[str]] = {
    "x86_64": ["SCMP_ARCH_X86_64"],
    "aarch64": ["SCMP_ARCH_AARCH64"],
}

# personality(2): PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the 0xffffffff query.
_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone() must carry none of them.
_CLONE_NAMESPACE_FLAGS = 0x7E020000
# socket(2): only the families a shell, a language runtime or a server needs: AF_UNIX (1),
# AF_INET (2), AF_INET6 (10) and AF_NETLINK (16, `ip`, `ss`, glibc's getaddrinfo). Docker allows
# every family but AF_ALG and AF_VSOCK; the rarely used ones (TIPC, RDS, CAN, LLC, X.25, AX.25,
# packet, XDP ...) are where most socket exploits of the last decade lived. Equality on the full
# 64-bit register, not Docker's "> 40": the kernel truncates the family to an int, so
# 0x1_00000026 passes "> 40" and opens an AF_ALG socket. socketpair(2) only for AF_UNIX: TIPC
# has socketpairs too.
_SOCKET_FAMILIES = (1, 2, 10, 16)
_AF_UNIX = 1


def _allow_if(name: str, index: int, op: str, value: int) -> dict[str, Any]:
    return {
        "names": [name],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": index, "value": value, "valueTwo": 0, "op": op}],
    }


def default_profile(machine: str | None = None) -> dict[str, Any]:
    """Playground's default OCI ``linux.seccomp`` object (a fresh dict on every call)."""
    machine = machine or platform.machine()
    clone_flags_index = 1 if machine.startswith("s390") else 0
    syscalls: list[dict[str, Any]] = [
        {"names": sorted(_ALLOWED + _ARCH_ALLOWED.get(machine, [])), "action": "SCMP_ACT_ALLOW"},
        *(_allow_if("personality", 0, "SCMP_CMP_EQ", p) for p in _PERSONALITIES),
        _allow_if("clone", clone_flags_index, "SCMP_CMP_MASKED_EQ", _CLONE_NAMESPACE_FLAGS),
        # ENOSYS, not EPERM, so that glibc falls back to clone(), where flags can be checked.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        *(_allow_if("socket", 0, "SCMP_CMP_EQ", f) for f in _SOCKET_FAMILIES),
        _allow_if("socketpair", 0, "SCMP_CMP_EQ", _AF_UNIX),
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(_ARCHITECTURES.get(machine, [])),
        "syscalls": syscalls,
    }
