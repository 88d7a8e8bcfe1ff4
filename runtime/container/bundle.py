"""The OCI bundle of an engine container: its config.json, generated from the image's
config, the run options and the security profile (``runtime.profile``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from runtime.container.idmap import IdRange
from runtime.container.model import RunOptions
from runtime.errors import InvalidArgument
from runtime.oci import paths
from runtime.oci.state import OCI_VERSION
from runtime.profile import DEFAULT_PATH_ENV, Profile, base_mounts

CPU_PERIOD = 100_000


@dataclass(frozen=True)
class BindMount:
    source: str
    destination: str
    read_only: bool


def command(options: RunOptions, image_config: dict[str, Any]) -> list[str]:
    """Docker's rule: entrypoint (flag or image) + cmd (flag, or image's when the
    entrypoint was not overridden)."""
    if options.entrypoint is not None:
        entrypoint = [e for e in options.entrypoint if e != ""]
        cmd = list(options.cmd or [])
    else:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = list(options.cmd) if options.cmd is not None else list(image_config.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("command", "no command specified")
    return args


def environment(options: RunOptions, image_config: dict[str, Any], hostname: str) -> list[str]:
    env: dict[str, str] = {}
    for item in [DEFAULT_PATH_ENV, f"HOSTNAME={hostname}", *(image_config.get("Env") or [])]:
        key, _, value = item.partition("=")
        env[key] = value
    if options.tty:
        env.setdefault("TERM", "xterm")
    for item in options.env:
        key, sep, value = item.partition("=")
        if not sep:
            value = os.environ.get(key, "")  # docker -e NAME passes the caller's value
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def resolve_user(rootfs: str, spec: str | None) -> dict[str, Any]:
    """``uid[:gid]`` or ``name[:group]`` against the image's /etc/passwd and /etc/group."""
    if not spec:
        return {"uid": 0, "gid": 0}
    user, _, group = spec.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    groups = _read_db(rootfs, "/etc/group")
    uid, gid, name = _lookup_user(user, passwd)
    if group:
        gid = _lookup_id(group, groups, "group")
    extra = sorted(
        {int(g[2]) for g in groups if len(g) > 3 and name and name in g[3].split(",")} - {gid}
    )
    result: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        result["additionalGids"] = extra
    return result


def _lookup_user(user: str, passwd: list[list[str]]) -> tuple[int, int, str]:
    for entry in passwd:
        if len(entry) > 3 and (entry[0] == user or entry[2] == user):
            return int(entry[2]), int(entry[3]), entry[0]
    if user.isdigit():
        return int(user), 0, ""
    raise InvalidArgument("user", f"unable to find user {user}: no matching entries in passwd file")


def _lookup_id(name: str, db: list[list[str]], what: str) -> int:
    for entry in db:
        if len(entry) > 2 and (entry[0] == name or entry[2] == name):
            return int(entry[2])
    if name.isdigit():
        return int(name)
    raise InvalidArgument(what, f"unable to find {what} {name}")


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    """Read a file of the image, resolved inside the rootfs (it may hold hostile links)."""
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = paths.open_in_root(root_fd, path, os.O_RDONLY)
    except OSError:
        return []
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "r", errors="replace") as f:
        text = f.read(1 << 20)
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def build_config(
    *,
    container_id: str,
    options: RunOptions,
    image_config: dict[str, Any],
    rootfs: str,
    binds: list[BindMount],
    profile: Profile,
    etc_files: dict[str, str],
    ids: IdRange | None = None,
) -> dict[str, Any]:
    """The config.json of one container; with ``ids``, in a user namespace of that range."""
    hostname = options.hostname or container_id[:12]
    args = command(options, image_config)
    process: dict[str, Any] = {
        "terminal": options.tty,
        "user": resolve_user(rootfs, options.user or image_config.get("User")),
        "args": args,
        "env": environment(options, image_config, hostname),
        "cwd": options.workdir or image_config.get("WorkingDir") or "/",
        "capabilities": {
            key: list(profile.capabilities) for key in ("bounding", "effective", "permitted")
        },
        "rlimits": profile.rlimits(),
        "noNewPrivileges": profile.no_new_privileges,
        "oomScoreAdj": profile.oom_score_adj,
    }
    process["capabilities"].update(inheritable=[], ambient=[])
    if options.tty:
        process["consoleSize"] = {"height": 24, "width": 80}
    mounts = base_mounts(profile) + [_bind(b) for b in binds]
    mounts += [_bind(BindMount(src, dest, False)) for dest, src in etc_files.items()]
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": options.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": {"io.playground.container": container_id},
        "linux": _linux(container_id, options, profile),
    }
    if ids is not None:
        lnx = config["linux"]
        lnx["namespaces"].insert(0, {"type": "user"})
        lnx["uidMappings"] = ids.mappings()
        lnx["gidMappings"] = ids.mappings()
    return config


def _bind(bind: BindMount) -> dict[str, Any]:
    options = ["rbind", "nosuid", "nodev", "ro" if bind.read_only else "rw"]
    return {
        "destination": bind.destination,
        "type": "bind",
        "source": bind.source,
        "options": options,
    }


def _linux(container_id: str, options: RunOptions, profile: Profile) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],
        "pids": {"limit": options.pids_limit or profile.pids_limit},
    }
    memory = options.memory or profile.memory
    if memory:
        resources["memory"] = {"limit": memory, "swap": memory}
    cpus = options.cpus or profile.cpus
    if cpus:
        resources["cpu"] = {"quota": int(cpus * CPU_PERIOD), "period": CPU_PERIOD}
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "network")]
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": f"/playground/{container_id}",
        "maskedPaths": list(profile.masked_paths),
        "readonlyPaths": list(profile.readonly_paths),
    }
    sysctls = profile.all_sysctls()
    if sysctls:
        linux["sysctl"] = sysctls
    seccomp = profile.seccomp_profile()
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return linux


def write_bundle(bundle_dir: str, config: dict[str, Any]) -> None:
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    path = os.path.join(bundle_dir, "config.json")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(config))  # one write: json.dump writes chunk by chunk
    os.replace(tmp, path)
