"""What the engine remembers of a container: the options it was created with and its
lifecycle status, with the predicates every operation checks first."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    REMOVING = "removing"

    def can_start(self) -> bool:
        return self in (Status.CREATED, Status.EXITED)

    def can_kill(self) -> bool:
        return self is Status.RUNNING

    def can_exec(self) -> bool:
        return self is Status.RUNNING

    def can_attach(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    def can_remove(self, force: bool) -> bool:
        return force or self in (Status.CREATED, Status.EXITED)


@dataclass(frozen=True)
class RunOptions:
    """``docker run``'s options as the engine takes them."""

    image: str
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    hostname: str | None = None
    user: str | None = None
    tty: bool = False
    stdin: bool = False
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    read_only: bool = False
    volumes: tuple[str, ...] = ()
    network: str = "none"
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    auto_remove: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOptions:
        def tup(key: str) -> Any:
            value = data.get(key)
            return None if value is None else tuple(value)

        return cls(
            **{
                **data,
                "cmd": tup("cmd"),
                "entrypoint": tup("entrypoint"),
                "env": tuple(data.get("env") or ()),
                "volumes": tuple(data.get("volumes") or ()),
                "labels": tuple(tuple(x) for x in data.get("labels") or ()),
            }
        )


@dataclass
class ContainerRecord:
    id: str
    name: str
    options: RunOptions
    image_id: str
    created: str
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    args: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    restart_count: int = 0
    # First host uid (and gid) of the container's user namespace; 0: none.
    userns_base: int = 0

    def to_json(self) -> str:
        data = dict(vars(self))
        data["options"] = self.options.to_dict()
        data["status"] = self.status.value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ContainerRecord:
        data = json.loads(text)
        data["options"] = RunOptions.from_dict(data["options"])
        data["status"] = Status(data["status"])
        return cls(**data)


def inspect_record(record: ContainerRecord) -> dict[str, Any]:
    """What ``docker inspect`` shows of a container."""
    options = record.options
    return {
        "Id": record.id,
        "Name": f"/{record.name}",
        "Created": record.created,
        "Path": record.args[0] if record.args else "",
        "Args": record.args[1:],
        "Image": record.image_id,
        "State": {
            "Status": record.status.value,
            "Running": record.status is Status.RUNNING,
            "Pid": record.pid,
            "ExitCode": record.exit_code or 0,
            "OOMKilled": record.oom_killed,
            "StartedAt": record.started_at,
            "FinishedAt": record.finished_at,
        },
        "Config": {
            "Image": options.image,
            "Cmd": list(options.cmd) if options.cmd is not None else None,
            "Entrypoint": list(options.entrypoint) if options.entrypoint is not None else None,
            "Env": list(options.env),
            "WorkingDir": options.workdir or "",
            "Hostname": options.hostname or record.id[:12],
            "User": options.user or "",
            "Tty": options.tty,
            "OpenStdin": options.stdin,
            "Labels": dict(options.labels),
        },
        "HostConfig": {
            "Memory": options.memory or 0,
            "NanoCpus": int((options.cpus or 0) * 1e9),
            "PidsLimit": options.pids_limit,
            "ReadonlyRootfs": options.read_only,
            "NetworkMode": options.network,
            "AutoRemove": options.auto_remove,
            "Binds": list(options.volumes),
            "UsernsMode": "" if record.userns_base else "host",
        },
        "Mounts": record.mounts,
    }
