"""runtime.oci.seccomp: compiling OCI profiles with libseccomp, and what installed filters do.

Filters are installed in forked children (no_new_privs allows that without privileges); a child
reports what its system calls returned through a pipe, then leaves with ``os._exit``. System calls
go through libc's ``syscall()`` so that each result is the kernel's (or the filter's) own.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import platform
import resource
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime import linux
from runtime.errors import SeccompError
from runtime.oci import seccomp

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

MOBY_PROFILE = "reference/moby-default-seccomp.json"
CLONE_NEWUSER = linux.CLONE_NEWUSER
AF_ALG, AF_VSOCK = 38, 40
ADDR_NO_RANDOMIZE = 0x0040000
X32_SYSCALL_BIT = 0x40000000


def _nr(name: str) -> int:
    nr = seccomp._lib().resolve(name)
    assert nr >= 0, f"{name} is not a system call on {platform.machine()}"
    return nr


def _sys(name: str, *args: int) -> int:
    """The raw system call: its result, or minus errno."""
    ctypes.set_errno(0)
    result = int(_libc.syscall(ctypes.c_long(_nr(name)), *(ctypes.c_ulong(a) for a in args)))
    return -ctypes.get_errno() if result == -1 else result


def _fork(body: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``body`` in a child; return its wait status and its JSON-able result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            linux.set_dumpable(False)  # a SIGSYS kill must not leave a core file behind
            os.write(w, json.dumps(body()).encode())
            code = 0
        except BaseException as exc:
            os.write(w, json.dumps({"child error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return status, json.loads(data) if data else None


def _filtered(program: bytes, probe: Callable[[], Any], flags: list[str] | None = None) -> Any:
    def body() -> Any:
        linux.set_no_new_privs()
        seccomp.install(program, flags or [])
        return probe()

    status, result = _fork(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (status, result)
    return result


def _killed_by(program: bytes, probe: Callable[[], Any]) -> int:
    def body() -> Any:
        linux.set_no_new_privs()
        seccomp.install(program, [])
        return probe()

    status, result = _fork(body)
    assert os.WIFSIGNALED(status), f"child survived: {result}"
    return os.WTERMSIG(status)


@pytest.fixture(scope="module")
def default_program() -> bytes:
    return seccomp.compile_bpf(seccomp.default_profile())


# --- the default profile, in the kernel ------------------------------------------------------


def _clone_newuser() -> int:
    result = _sys("clone", CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0)
    if result == 0:  # the filter let it through: this is the new child, which must not go on
        os._exit(0)
    return result


def _thread_runs() -> bool:
    ran: list[bool] = []
    thread = threading.Thread(target=lambda: ran.append(True))
    thread.start()  # glibc tries clone3 first and falls back to clone on ENOSYS
    thread.join()
    return ran == [True]


def _fork_runs() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _socket(family: int) -> int:
    fd = _sys("socket", family, socket.SOCK_STREAM, 0)
    if fd >= 0:
        os.close(fd)
        return 0
    return fd


def _default_probe() -> dict[str, Any]:
    uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
    results = {
        "clone_newuser": _clone_newuser(),
        "setns": _sys("setns", uts, 0),
        "mount": _sys("mount", 0, 0, 0, 0, 0),
        "keyctl": _sys("keyctl", 0, 0, 0, 0, 0),
        "bpf": _sys("bpf", 0, 0, 0),
        "io_uring_setup": _sys("io_uring_setup", 1, 0),
        "userfaultfd": _sys("userfaultfd", 0),
        "perf_event_open": _sys("perf_event_open", 0, 0, 0, 0, 0),
        "init_module": _sys("init_module", 0, 0, 0),
        "name_to_handle_at": _sys("name_to_handle_at", 0, 0, 0, 0, 0),
        "clock_settime": _sys("clock_settime", 0, 0),
        "ptrace": _sys("ptrace", 7, os.getpid(), 0, 0),  # PTRACE_CONT: ESRCH if it got through
        "process_vm_readv": _sys("process_vm_readv", os.getpid(), 0, 0, 0, 0, 0),
        "socket_alg": _socket(AF_ALG),
        "socket_alg_high_bits": _socket((1 << 32) | AF_ALG),  # the kernel reads an int
        "socket_vsock": _socket(AF_VSOCK),
        "socket_inet": _socket(socket.AF_INET),
        "socket_unix": _socket(socket.AF_UNIX),
        "personality_query": _sys("personality", 0xFFFFFFFF),
        "personality_linux32": _sys("personality", 0x0008),
        "personality_no_randomize": _sys("personality", ADDR_NO_RANDOMIZE),
        "personality_reset": _sys("personality", 0),
        "clone3": _sys("clone3", 0, 0),
        "getpid": _sys("getpid") == os.getpid(),
        "thread": _thread_runs(),
        "fork": _fork_runs(),
        "unshare": _sys("unshare", CLONE_NEWUSER),  # last: if it got through, it changes a lot
    }
    os.close(uts)
    return results


def test_default_profile_blocks_escapes_and_allows_ordinary_work(default_program: bytes) -> None:
    flags = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]
    got = _filtered(default_program, _default_probe, flags)
    denied = {k for k, v in got.items() if v == -errno.EPERM}
    assert denied == {
        "unshare",
        "clone_newuser",
        "setns",
        "mount",
        "keyctl",
        "bpf",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
        "init_module",
        "name_to_handle_at",
        "clock_settime",
        "ptrace",
        "process_vm_readv",
        "socket_alg",
        "socket_alg_high_bits",
        "socket_vsock",
        "personality_no_randomize",
    }, got
    assert got["clone3"] == -errno.ENOSYS
    assert got["socket_inet"] == got["socket_unix"] == 0
    assert got["personality_query"] >= 0 and got["personality_linux32"] >= 0
    assert got["personality_reset"] >= 0
    assert got["getpid"] is True and got["thread"] is True and got["fork"] == 7


def test_default_errno_ret_is_honoured() -> None:
    profile = seccomp.default_profile()
    profile["defaultErrnoRet"] = errno.ENOTSUP
    program = seccomp.compile_bpf(profile)
    assert _filtered(program, lambda: _sys("keyctl", 0, 0, 0, 0, 0)) == -errno.ENOTSUP


def test_x32_system_calls_kill_the_process(default_program: bytes) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("x32 is an x86_64 ABI")

    def x32_getpid() -> int:
        return int(_libc.syscall(ctypes.c_long(_nr("getpid") | X32_SYSCALL_BIT)))

    assert _killed_by(default_program, x32_getpid) == signal.SIGSYS


def _int80_getpid() -> int:
    """getpid through the i386 ABI (int $0x80, eax=20), from a page of machine code."""
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20; int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return int(ctypes.CFUNCTYPE(ctypes.c_int)(address)())


def test_i386_system_calls_kill_the_process(default_program: bytes) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("int 0x80 is x86")
    status, result = _fork(lambda: _int80_getpid() > 0)
    if not (os.WIFEXITED(status) and result is True):
        pytest.skip("this kernel runs no i386 system calls (ia32_emulation off)")
    assert _killed_by(default_program, _int80_getpid) == signal.SIGSYS


# --- custom profiles, in the kernel ----------------------------------------------------------


def _rule(names: list[str], action: str, **extra: Any) -> dict[str, Any]:
    return {"names": names, "action": action, **extra}


def _arg(index: int, op: str, value: int, value_two: int = 0) -> dict[str, Any]:
    return {"index": index, "op": op, "value": value, "valueTwo": value_two}


def test_rules_honour_errno_arguments_and_skip_unknown_names() -> None:
    config = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            _rule(["no_such_syscall_xyz", "getppid"], "SCMP_ACT_ERRNO", errnoRet=errno.EBADFD),
            _rule(["getppid"], "SCMP_ACT_ALLOW"),  # conflicts: the first rule wins
            # only personality(0) is allowed
            _rule(["personality"], "SCMP_ACT_ERRNO", args=[_arg(0, "SCMP_CMP_NE", 0)]),
            # one argument compared twice: either comparison matches (runc's semantics)
            _rule(
                ["getpgid"],
                "SCMP_ACT_ERRNO",
                errnoRet=errno.EACCES,
                args=[_arg(0, "SCMP_CMP_EQ", 1), _arg(0, "SCMP_CMP_EQ", 2)],
            ),
            _rule(["umask"], "SCMP_ACT_ERRNO", args=[_arg(0, "SCMP_CMP_MASKED_EQ", 0o7, 0o7)]),
        ],
    }
    got = _filtered(
        seccomp.compile_bpf(config),
        lambda: {
            "getppid": _sys("getppid"),
            "personality0": _sys("personality", 0),
            "personality8": _sys("personality", 8),
            "query": _sys("personality", 0xFFFFFFFF),
            "getpgid": [_sys("getpgid", p) for p in (0, 1, 2)],
            "umask": [_sys("umask", m) for m in (0o022, 0o070, 0o077)],
        },
    )
    assert got["getppid"] == -errno.EBADFD
    assert got["personality0"] >= 0
    assert got["personality8"] == got["query"] == -errno.EPERM
    assert got["getpgid"][0] >= 0 and got["getpgid"][1:] == [-errno.EACCES] * 2
    assert got["umask"][0] >= 0 and got["umask"][1] >= 0 and got["umask"][2] == -errno.EPERM


def test_kill_process_action_kills() -> None:
    config = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [_rule(["getppid"], "SCMP_ACT_KILL_PROCESS")],
    }
    assert _killed_by(seccomp.compile_bpf(config), lambda: _sys("getppid")) == signal.SIGSYS


# --- compiling -------------------------------------------------------------------------------


def test_unknown_syscall_names_are_skipped_with_a_debug_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger=seccomp.__name__)
    base: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
    with_unknown = {**base, "syscalls": [_rule(["no_such_syscall_abc"], "SCMP_ACT_KILL")]}
    assert seccomp.compile_bpf(with_unknown) == seccomp.compile_bpf(base)
    assert "no_such_syscall_abc" in caplog.text


@pytest.mark.parametrize(
    "config, named",
    [
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "SCMP_ACT_NOTIFY"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [_rule(["getpid"], "SCMP_ACT_NOTIFY")]},
            "SCMP_ACT_NOTIFY",
        ),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}, "listenerPath"),
        ({"defaultAction": "SCMP_ACT_EXPLODE"}, "SCMP_ACT_EXPLODE"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "SCMP_ARCH_VAX"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}, "FLAG_X"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [_rule(["getpid"], "SCMP_ACT_ERRNO", args=[_arg(0, "SCMP_CMP_XX", 1)])],
            },
            "SCMP_CMP_XX",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [_rule(["getpid"], "SCMP_ACT_ERRNO", args=[_arg(6, "SCMP_CMP_EQ", 1)])],
            },
            "index 6",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [_rule(["getpid"], "SCMP_ACT_ALLOW", errnoRet=1)],
            },
            "errno",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{**_rule(["x"], "SCMP_ACT_KILL"), "includes": {}}],
            },
            "includes",
        ),
    ],
)
def test_it_rejects_what_it_cannot_honour(config: dict[str, Any], named: str) -> None:
    with pytest.raises(SeccompError, match=named):
        seccomp.compile_bpf(config)


@pytest.mark.parametrize(
    "action",
    [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
        "SCMP_ACT_ALLOW",
    ],
)
def test_every_oci_action_compiles(action: str) -> None:
    other = "SCMP_ACT_LOG" if action == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    program = seccomp.compile_bpf({"defaultAction": action, "syscalls": [_rule(["getpid"], other)]})
    assert program and len(program) % 8 == 0


def test_a_docker_style_multi_arch_profile_with_conflicts_compiles() -> None:
    moby = _moby_profile()
    # Flatten Docker's conditional rules: the same syscalls then appear with conflicting rules.
    syscalls = [
        {k: v for k, v in s.items() if k not in ("includes", "excludes", "comment")}
        for s in moby["syscalls"]
    ]
    config = {
        "defaultAction": moby["defaultAction"],
        "defaultErrnoRet": moby["defaultErrnoRet"],
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    }
    program = seccomp.compile_bpf(config)
    assert len(program) % 8 == 0 and len(program) // 8 <= 4096


def test_compiled_programs_are_cached_in_memory_and_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seccomp.clear_cache()
    profile = seccomp.default_profile()
    first = seccomp.compile_bpf(profile, cache_dir=str(tmp_path))
    assert seccomp.compile_bpf(seccomp.default_profile()) is first
    (cached,) = tmp_path.iterdir()
    assert cached.read_bytes() == first and cached.stat().st_mode & 0o777 == 0o600

    seccomp.clear_cache()

    def no_compiling(config: Any) -> bytes:
        raise AssertionError("compiled again")

    monkeypatch.setattr(seccomp, "_compile", no_compiling)
    assert seccomp.compile_bpf(profile, cache_dir=str(tmp_path)) == first


@pytest.mark.parametrize("damage", ["truncated", "writable by others"])
def test_a_damaged_disk_cache_entry_is_compiled_again(tmp_path: Path, damage: str) -> None:
    seccomp.clear_cache()
    profile = seccomp.default_profile()
    first = seccomp.compile_bpf(profile, cache_dir=str(tmp_path))
    (cached,) = tmp_path.iterdir()
    allow_all = seccomp.compile_bpf({"defaultAction": "SCMP_ACT_ALLOW"})
    if damage == "truncated":
        cached.write_bytes(allow_all[:5])
    else:
        cached.write_bytes(allow_all)
        cached.chmod(0o666)
    seccomp.clear_cache()
    assert seccomp.compile_bpf(profile, cache_dir=str(tmp_path)) == first


def test_filter_flags_translate_to_seccomp_bits() -> None:
    assert seccomp.filter_flags(None) == 0
    assert seccomp.filter_flags(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]) == 3
    assert seccomp.filter_flags(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]) == 4


def test_install_rejects_a_program_that_is_not_whole_instructions() -> None:
    with pytest.raises(SeccompError, match="5 bytes"):
        seccomp.install(b"12345", [])


# --- the default profile as data -------------------------------------------------------------


def _moby_profile() -> dict[str, Any]:
    for shared in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")):
        if (shared / MOBY_PROFILE).exists():
            data: dict[str, Any] = json.loads((shared / MOBY_PROFILE).read_text())
            return data
    pytest.skip(f"shared/{MOBY_PROFILE} is not beside the repository")


def _allowed(profile: dict[str, Any], *, conditional: bool) -> set[str]:
    names: set[str] = set()
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and (conditional or not rule.get("args")):
            names.update(rule["names"])
    return names


def test_default_profile_is_at_least_as_strict_as_dockers() -> None:
    ours, moby = seccomp.default_profile(), _moby_profile()
    assert ours["defaultAction"] == "SCMP_ACT_ERRNO" and ours["defaultErrnoRet"] == errno.EPERM
    # Docker's rules under any condition (capabilities, kernel version, arch) count as allowed.
    docker_any = _allowed(moby, conditional=True)
    assert _allowed(ours, conditional=False) <= docker_any
    assert _allowed(ours, conditional=True) <= docker_any
    never = {
        "unshare", "setns", "clone3", "mount", "umount2", "pivot_root", "move_mount", "open_tree",
        "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr", "keyctl", "add_key",
        "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
        "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "reboot",
        "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "lookup_dcookie", "ptrace",
        "process_vm_readv", "process_vm_writev", "syslog", "clock_settime", "settimeofday",
        "adjtimex", "clock_adjtime", "kcmp", "pidfd_getfd", "iopl", "ioperm", "modify_ldt",
    }  # fmt: skip
    assert not never & _allowed(ours, conditional=True)
    assert {"clone", "socket", "personality"} <= _allowed(ours, conditional=True)


def test_default_profile_follows_the_machine_and_is_a_fresh_copy() -> None:
    x86, arm = seccomp.default_profile("x86_64"), seccomp.default_profile("aarch64")
    assert x86["architectures"] == ["SCMP_ARCH_X86_64"]
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64"]
    assert "arch_prctl" in x86["syscalls"][0]["names"]
    assert "arch_prctl" not in arm["syscalls"][0]["names"]
    x86["syscalls"].clear()
    assert seccomp.default_profile("x86_64")["syscalls"]
