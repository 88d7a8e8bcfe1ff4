"""The runtime's state directory: one folder per container holding ``state.json`` and the
exec FIFO, plus the status machine and its predicates.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ContainerExists, ContainerNotFound, InvalidContainerId

DEFAULT_ROOT = "/run/playground/oci"
OCI_VERSION = "1.1.0"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+\-.]{0,1023}$")


class Status(enum.StrEnum):
    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"

    def can_start(self) -> bool:
        return self is Status.CREATED

    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    def can_exec(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    def can_delete(self) -> bool:
        """Without --force only a stopped container (the OCI spec: deleting one that is not
        stopped MUST be an error)."""
        return self is Status.STOPPED


@dataclass
class ContainerState:
    """What the runtime remembers of one container between commands."""

    id: str
    bundle: str
    rootfs: str
    pid: int = 0
    pid_start_time: int = 0
    created: str = ""
    started: bool = False
    cgroups_path: str = ""
    owner: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(vars(self))

    @classmethod
    def from_json(cls, text: str) -> ContainerState:
        data = json.loads(text)
        return cls(**data)


def validate_id(container_id: str) -> None:
    if not _ID_RE.match(container_id) or container_id in (".", ".."):
        raise InvalidContainerId(container_id)


def process_start_time(pid: int, proc: str = "/proc") -> int:
    """Field 22 of /proc/<pid>/stat, or 0 when the process is gone or a zombie."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0
    rest = raw[raw.rfind(b")") + 2 :].split()
    if rest[0] in (b"Z", b"X"):
        return 0
    return int(rest[19])


class StateStore:
    """Container folders under ``root`` (``--root``); two roots never see each other."""

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        validate_id(container_id)
        return os.path.join(self.root, container_id)

    def reserve(self, container_id: str) -> str:
        """Create the container's folder; fails if the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        return path

    def save(self, state: ContainerState) -> None:
        path = os.path.join(self.dir(state.id), STATE_FILE)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(state.to_json())
        os.replace(tmp, path)

    def load(self, container_id: str) -> ContainerState:
        path = os.path.join(self.dir(container_id), STATE_FILE)
        try:
            with open(path) as f:
                return ContainerState.from_json(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None

    def status(self, state: ContainerState) -> Status:
        if state.pid == 0:
            return Status.CREATING
        if process_start_time(state.pid) != state.pid_start_time:
            return Status.STOPPED
        if os.path.exists(os.path.join(self.dir(state.id), EXEC_FIFO)):
            return Status.CREATED
        return Status.RUNNING

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(os.path.join(self.root, n, STATE_FILE))]

    def remove(self, container_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.dir(container_id))
