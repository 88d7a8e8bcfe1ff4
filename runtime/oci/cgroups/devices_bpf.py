"""Device access rules: parsing OCI ``linux.resources.devices`` and, for cgroup v2, the eBPF
program that enforces them (cgroup v2 has no devices.allow; the kernel runs a
BPF_PROG_TYPE_CGROUP_DEVICE program attached to the cgroup directory).

Semantics match cgroup v1 writes: access starts denied, rules apply in order and a later rule
wins. A rule of type ``a`` resets everything (as the v1 kernel does, whatever its major, minor
and access say). The program checks rules last to first and returns at the first match; an
allow rule matches when it covers all the requested access bits, a deny rule when it covers
any of them, so a deny can only narrow what earlier rules allowed.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime import linux
from runtime.errors import CgroupError
from runtime.oci.cgroups.base import as_list, as_mapping

logger = logging.getLogger(__name__)

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
DEV_BLOCK = 1
DEV_CHAR = 2
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4
_ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_ALL_ACCESS = ACC_MKNOD | ACC_READ | ACC_WRITE

# eBPF opcodes (class | op | source)
OP_LDXW = 0x61  # dst = *(u32 *)(src + off)
OP_AND32_K = 0x54
OP_RSH32_K = 0x74
OP_MOV32_X = 0xBC
OP_MOV32_K = 0xB4
OP_JEQ_K = 0x15
OP_JNE_K = 0x55
OP_JNE_X = 0x5D
OP_EXIT = 0x95


@dataclass(frozen=True, slots=True)
class DeviceRule:
    allow: bool
    type: str  # "a", "c" or "b"
    major: int | None  # None = any
    minor: int | None
    access: str  # a non-empty subset of "rwm"

    def v1_line(self) -> str:
        """The devices.allow / devices.deny line for this rule."""
        if self.type == "a":
            return "a"
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def _device_number(rule: Mapping[str, Any], key: str, field: str, cgroup: str) -> int | None:
    value = rule.get(key)
    if value is None or value == -1:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise CgroupError(cgroup, f"{field}.{key}: invalid device number {value!r}")
    return int(value)


def parse_rules(devices: Any, cgroup: str) -> list[DeviceRule]:
    """Validate ``linux.resources.devices``."""
    rules = []
    for i, raw in enumerate(as_list(devices, "devices", cgroup)):
        field = f"devices[{i}]"
        rule = as_mapping(raw, field, cgroup)
        allow = rule.get("allow")
        if not isinstance(allow, bool):
            raise CgroupError(cgroup, f"{field}.allow: expected true or false")
        kind = rule.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise CgroupError(cgroup, f"{field}.type: expected a, c or b, got {kind!r}")
        access = rule.get("access") or "rwm"
        if not isinstance(access, str) or set(access) - set("rwm"):
            raise CgroupError(cgroup, f"{field}.access: expected letters from rwm, got {access!r}")
        major = _device_number(rule, "major", field, cgroup)
        minor = _device_number(rule, "minor", field, cgroup)
        access = "".join(c for c in "rwm" if c in access)
        rules.append(DeviceRule(allow, kind, major, minor, access))
    return rules


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn`` (little-endian: dst_reg is the low nibble)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _prologue() -> list[bytes]:
    return [
        insn(OP_LDXW, dst=2, src=1, off=0),  # r2 = access_type
        insn(OP_AND32_K, dst=2, imm=0xFFFF),  # r2 = device type
        insn(OP_LDXW, dst=3, src=1, off=0),
        insn(OP_RSH32_K, dst=3, imm=16),  # r3 = requested access bits
        insn(OP_LDXW, dst=4, src=1, off=4),  # r4 = major
        insn(OP_LDXW, dst=5, src=1, off=8),  # r5 = minor
    ]


def _rule_block(rule: DeviceRule) -> list[bytes]:
    """Checks that jump past the block on mismatch, then return the rule's verdict.

    Jump offsets are filled in as "skip to the end of this block": ``off`` is relative to the
    next instruction, so a check at index i of an n-instruction block uses n - i - 1.
    """
    checks: list[tuple[int, int, int, int]] = []  # (code, dst, src, imm); off filled later
    checks.append((OP_JNE_K, 2, 0, DEV_CHAR if rule.type == "c" else DEV_BLOCK))
    bits = sum(_ACCESS_BITS[c] for c in rule.access)
    if bits != _ALL_ACCESS:
        checks.append((OP_MOV32_X, 1, 3, 0))  # r1 = requested
        checks.append((OP_AND32_K, 1, 0, bits))  # r1 &= rule access
        if rule.allow:
            checks.append((OP_JNE_X, 1, 3, 0))  # not all requested bits covered
        else:
            checks.append((OP_JEQ_K, 1, 0, 0))  # no requested bit covered
    if rule.major is not None:
        checks.append((OP_JNE_K, 4, 0, rule.major))
    if rule.minor is not None:
        checks.append((OP_JNE_K, 5, 0, rule.minor))
    size = len(checks) + 2
    block = []
    for i, (code, dst, src, imm) in enumerate(checks):
        is_jump = code in (OP_JNE_K, OP_JNE_X, OP_JEQ_K)
        block.append(insn(code, dst, src, size - i - 1 if is_jump else 0, imm))
    block.append(insn(OP_MOV32_K, dst=0, imm=1 if rule.allow else 0))
    block.append(insn(OP_EXIT))
    return block


def build_program(rules: Sequence[DeviceRule]) -> bytes:
    """The eBPF program for ``rules``; verdict 1 allows the access, 0 denies it."""
    if sys.byteorder != "little":
        raise CgroupError("devices", "eBPF device filters are only built for little-endian hosts")
    blocks: list[bytes] = []
    default_allow = False
    for rule in reversed(rules):
        if rule.type == "a":
            # Resets the state: earlier rules are unreachable, and the verifier
            # rejects programs with unreachable instructions.
            default_allow = rule.allow
            break
        blocks.extend(_rule_block(rule))
    tail = [insn(OP_MOV32_K, dst=0, imm=1 if default_allow else 0), insn(OP_EXIT)]
    return b"".join(_prologue() + blocks + tail)


def attach(path: str, program: bytes) -> None:
    """Load ``program`` and attach it to the cgroup2 directory ``path``, replacing ours.

    BPF_F_ALLOW_MULTI lets nested runtimes attach their own programs below (they can only
    narrow access). Programs already attached here are detached after the new one is in,
    so there is no window without a filter.
    """
    dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = linux.bpf_prog_query(dirfd, BPF_CGROUP_DEVICE)
        progfd = linux.bpf_prog_load(
            BPF_PROG_TYPE_CGROUP_DEVICE, program, "Apache", name="playground_dev"
        )
        try:
            linux.bpf_prog_attach(dirfd, progfd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
        finally:
            os.close(progfd)
        for prog_id in old:
            oldfd = linux.bpf_prog_get_fd_by_id(prog_id)
            try:
                linux.bpf_prog_detach(dirfd, oldfd, BPF_CGROUP_DEVICE)
            finally:
                os.close(oldfd)
    finally:
        os.close(dirfd)
