"""The container process's credentials: capabilities (all five sets), user and groups,
rlimits, oom_score_adj and no_new_privs, applied in the order the kernel requires.
"""

from __future__ import annotations

import errno
import os
import resource
from dataclasses import dataclass
from typing import Any

from runtime import linux
from runtime.oci.spec import CAPABILITIES, RLIMITS


class CredentialsError(Exception):
    """A credential could not be applied; the message names it."""


@dataclass(frozen=True)
class CapSets:
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int

    @classmethod
    def from_spec(cls, caps: dict[str, Any] | None) -> CapSets:
        caps = caps or {}

        def mask(name: str) -> int:
            value = 0
            for cap in caps.get(name) or []:
                value |= 1 << CAPABILITIES[cap]
            return value

        return cls(
            mask("bounding"),
            mask("effective"),
            mask("permitted"),
            mask("inheritable"),
            mask("ambient"),
        )


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    for item in rlimits:
        name = item["type"]
        soft, hard = int(item["soft"]), int(item["hard"])
        try:
            resource.setrlimit(RLIMITS[name], (soft, hard))
        except (ValueError, OSError) as exc:
            current = resource.getrlimit(RLIMITS[name])[1]
            if hard > current or (current == resource.RLIM_INFINITY and hard != current):
                raise CredentialsError(
                    f"rlimit {name}: hard limit {hard} is above the current hard limit {current}, "
                    "and raising it needs CAP_SYS_RESOURCE, which this runtime lacks"
                ) from exc
            raise CredentialsError(f"rlimit {name}: {exc}") from exc


def set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise CredentialsError(
            f"oomScoreAdj {value}: {exc.strerror} (lowering it needs CAP_SYS_RESOURCE)"
        ) from exc


def drop_bounding(keep: int, last_cap: int) -> None:
    for cap in range(last_cap + 1):
        if not keep & (1 << cap):
            try:
                linux.capbset_drop(cap)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise CredentialsError(f"dropping capability {cap}: {exc.strerror}") from exc


def switch_user(user: dict[str, Any], caps: CapSets) -> None:
    """setgroups/setgid/setuid keeping the permitted set, then install the final sets."""
    uid = int(user.get("uid", 0))
    gid = int(user.get("gid", 0))
    groups = [int(g) for g in user.get("additionalGids") or []]
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    try:
        os.setgroups(groups)
    except OSError as exc:
        if exc.errno != errno.EPERM or groups:
            raise CredentialsError(f"setgroups {groups}: {exc.strerror}") from exc
    try:
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise CredentialsError(f"user {uid}:{gid}: {exc.strerror}") from exc
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    try:
        linux.capset(caps.effective, caps.permitted, caps.inheritable)
    except OSError as exc:
        raise CredentialsError(f"capabilities: {exc.strerror}") from exc
    linux.ambient_clear()
    for cap in range(64):
        if caps.ambient & (1 << cap):
            try:
                linux.ambient_raise(cap)
            except OSError as exc:
                raise CredentialsError(f"ambient capability {cap}: {exc.strerror}") from exc
