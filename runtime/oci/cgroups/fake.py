"""``FakeCgroup``: an in-memory ``CgroupManager`` for tests of the layers above cgroups.

It touches no files and signals no processes; it records what it was asked to do, so a test
can assert on it, and it can be told to fail (``fail_on``) to exercise error paths.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from typing import Any

from runtime.errors import CgroupError
from runtime.oci.cgroups.base import CgroupStats, normalize_path

logger = logging.getLogger(__name__)


class FakeCgroup:
    def __init__(self, cgroups_path: str, *, fail_on: frozenset[str] = frozenset()) -> None:
        self.path = normalize_path(cgroups_path)
        self.fail_on = fail_on
        self.created = False
        self.destroyed = False
        self.frozen = False
        self.resources: dict[str, Any] = {}
        self.members: list[int] = []
        self.signals: list[int] = []
        self.oom_kills = 0

    def _step(self, name: str) -> None:
        if name in self.fail_on:
            raise CgroupError(self.path, f"{name}: injected failure")

    def create(self) -> None:
        self._step("create")
        self.created = True
        self.destroyed = False

    def apply(self, resources: Mapping[str, Any]) -> None:
        self._step("apply")
        self.resources.update(resources)

    def add_pid(self, pid: int) -> None:
        self._step("add_pid")
        if not self.created or self.destroyed:
            raise CgroupError(self.path, "cgroup.procs: the cgroup does not exist")
        self.members.append(pid)

    def pids(self) -> list[int]:
        return list(self.members)

    def freeze(self) -> None:
        self._step("freeze")
        self.frozen = True

    def thaw(self) -> None:
        self._step("thaw")
        self.frozen = False

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        self._step("kill_all")
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.members.clear()

    def destroy(self) -> None:
        self._step("destroy")
        self.members.clear()
        self.created = False
        self.destroyed = True

    def stats(self) -> CgroupStats:
        memory = self.resources.get("memory") or {}
        limit = memory.get("limit")
        pids_limit = (self.resources.get("pids") or {}).get("limit")
        return CgroupStats(
            cpu_usage_ns=0,
            memory_usage=0,
            memory_limit=limit if limit and limit > 0 else None,
            memory_max_usage=0,
            pids_current=len(self.members),
            pids_limit=pids_limit if pids_limit and pids_limit > 0 else None,
            oom_kill_count=self.oom_kills,
        )

    def oom_killed(self) -> int:
        return self.oom_kills
