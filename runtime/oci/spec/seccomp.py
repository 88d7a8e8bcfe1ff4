"""The shape of ``linux.seccomp``. Whether each system call name exists on this machine is
left to runtime.oci.seccomp, which compiles the filter.
"""

from __future__ import annotations

from typing import Any

from runtime.oci.spec.checks import (
    UINT32_MAX,
    UINT64_MAX,
    fail,
    integer,
    list_of,
    obj,
    one_of,
    unsupported,
)

ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
    }
)
ARCHITECTURES = frozenset(
    {
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
        "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
        "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    }
)  # fmt: skip
FLAGS = frozenset(
    {
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)
OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)
_NOTIFY = "SCMP_ACT_NOTIFY"
_ACTION = one_of(ACTIONS, "seccomp action")


def _action(value: Any, path: str) -> None:
    if value == _NOTIFY:
        fail(path, "SCMP_ACT_NOTIFY (a seccomp agent) is not supported by playground")
    _ACTION(value, path)


def _names(value: Any, path: str) -> None:
    """Profiles list hundreds of names, so the loop builds no path until one is bad."""
    if type(value) is not list:
        fail(path, "must be a list")
    if not value:
        fail(path, "must not be empty")
    for index, name in enumerate(value):
        if type(name) is not str or not name:
            fail(f"{path}[{index}]", "must be a system call name")


_ARG = obj(
    {
        "index": integer(0, 5),
        "value": integer(0, UINT64_MAX),
        "valueTwo": integer(0, UINT64_MAX),
        "op": one_of(OPERATORS, "seccomp operator"),
    },
    required=("index", "value", "op"),
)

_ERRNO = integer(0, UINT32_MAX)

_SYSCALL = obj(
    {"names": _names, "action": _action, "errnoRet": _ERRNO, "args": list_of(_ARG)},
    required=("names", "action"),
)

SECCOMP = obj(
    {
        "defaultAction": _action,
        "defaultErrnoRet": _ERRNO,
        "architectures": list_of(one_of(ARCHITECTURES, "seccomp architecture")),
        "flags": list_of(one_of(FLAGS, "seccomp flag")),
        "syscalls": list_of(_SYSCALL),
        "listenerPath": unsupported("seccomp agents are not supported by playground"),
        "listenerMetadata": unsupported("seccomp agents are not supported by playground"),
    },
    required=("defaultAction",),
)
