"""``run`` and ``create``'s shared flags, turned into the engine's ``RunOptions`` (as the dict
that ``RunOptions.to_dict()`` makes, which is what travels to the daemon; building the
dataclass itself would import dataclasses for nothing)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from runtime.errors import InvalidArgument

NETWORKS = ("none",)


def add_container_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--rm", action="store_true", help="remove the container when it exits")
    add("-i", "--interactive", action="store_true", help="keep stdin open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    add("--name", help="assign a name to the container")
    add("-e", "--env", action="append", default=[], metavar="VAR[=VALUE]")
    add("-w", "--workdir", help="working directory inside the container")
    add("--hostname", help="container host name")
    add("-u", "--user", help="USER[:GROUP] or UID[:GID]")
    add("--memory", "-m", help="memory limit (512m, 1g)")
    add("--cpus", type=float, help="number of CPUs (1.5)")
    add("--pids-limit", type=int, help="maximum number of processes")
    add("--read-only", action="store_true", help="mount the root file system read-only")
    add("-v", "--volume", action="append", default=[], metavar="SPEC", help="NAME:/path[:ro]")
    add("--network", "--net", default="none", help="only 'none' is supported")
    add("--entrypoint", help="override the image's entrypoint ('' clears it)")
    add("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    add("image", metavar="IMAGE")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")


def build_options(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> dict[str, Any]:
    """The ``RunOptions`` dict for these flags; ``environ`` completes ``-e VAR`` as Docker does."""
    return {
        "image": args.image,
        "cmd": list(args.command) if args.command else None,
        "entrypoint": _entrypoint(args.entrypoint),
        "env": complete_env(args.env, environ),
        "workdir": args.workdir,
        "hostname": args.hostname,
        "user": args.user,
        "tty": args.tty,
        "stdin": args.interactive,
        "memory": parse_memory(args.memory) if args.memory is not None else None,
        "cpus": _cpus(args.cpus),
        "pids_limit": args.pids_limit,
        "read_only": args.read_only,
        "volumes": list(args.volume),
        "network": _network(args.network),
        "name": args.name,
        "labels": [list(_label(text)) for text in args.label],
        "auto_remove": args.rm,
    }


def parse_memory(text: str) -> int:
    """Docker's memory units: "512m", "1g", "100000" (bytes); binary multiples."""
    # Imported here: the volumes package loads its store, which "run" rarely needs.
    from runtime.volumes import parse_size

    size = parse_size(text.strip())
    if size <= 0:
        raise InvalidArgument("--memory", f"{text!r} must be a positive size")
    return size


def _entrypoint(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [text] if text else []


def complete_env(items: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """``-e K=V`` as given; ``-e K`` takes K from the caller's environment, or is dropped."""
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif item and item in environ:
            out.append(f"{item}={environ[item]}")
    return out


def _label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise InvalidArgument("--label", f"{text!r}: the key is empty")
    return key, value


def _cpus(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise InvalidArgument("--cpus", f"{value} is not a positive number of CPUs")
    return value


def _network(name: str) -> str:
    if name not in NETWORKS:
        raise InvalidArgument("--network", f"network {name} not found: only 'none' is supported")
    return name
