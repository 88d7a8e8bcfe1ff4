"""Manage volumes: create, ls, inspect, rm."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime.cli import format as fmt
from runtime.cli.context import Context
from runtime.cli.records import load_records, volume_user
from runtime.cli.status import ENGINE_ERROR, for_each, report
from runtime.errors import ContainerRuntimeError, VolumeNotFound

if TYPE_CHECKING:
    from runtime.volumes import Volume, VolumeStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a volume (a random name without NAME)")
    create.add_argument("--size", help="size limit (100m, 1g): an ext4 image on a loop device")
    create.add_argument("name", nargs="?", metavar="NAME")
    ls = sub.add_parser("ls", aliases=["list"], help="list volumes")
    ls.add_argument("-q", "--quiet", action="store_true", help="only display names")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    inspect = sub.add_parser("inspect", help="show volumes as a JSON array")
    inspect.add_argument("names", nargs="+", metavar="VOLUME")
    rm = sub.add_parser("rm", aliases=["remove"], help="remove volumes no container uses")
    rm.add_argument("-f", "--force", action="store_true", help="a missing volume is no error")
    rm.add_argument("names", nargs="+", metavar="VOLUME")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.volumes import VolumeStore

    store = VolumeStore(ctx.config.volumes_dir)
    actions: dict[str, Callable[[argparse.Namespace, VolumeStore, Context], int]] = {
        "create": create,
        "ls": ls,
        "list": ls,
        "inspect": inspect,
        "rm": remove,
        "remove": remove,
    }
    return actions[args.action](args, store, ctx)


def create(args: argparse.Namespace, store: VolumeStore, ctx: Context) -> int:
    from runtime.volumes import parse_size

    size = parse_size(args.size) if args.size is not None else None
    print(store.create(args.name, size=size).name)
    return 0


def ls(args: argparse.Namespace, store: VolumeStore, ctx: Context) -> int:
    volumes = store.list()
    if args.quiet:
        lines = [v.name for v in volumes]
    elif args.format == "json":
        lines = [fmt.json_line(summary(v)) for v in volumes]
    else:
        lines = [fmt.table(("DRIVER", "VOLUME NAME"), [[v.driver, v.name] for v in volumes])]
    if lines:
        print("\n".join(lines))
    return 0


def summary(volume: Volume) -> dict[str, str]:
    """One volume as ``docker volume ls --format '{{json .}}'`` shows it."""
    return {
        "Driver": volume.driver,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(volume.labels.items())),
        "Links": "N/A",
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Scope": "local",
        "Size": fmt.bytes_size(volume.size) if volume.size is not None else "N/A",
    }


def details(volume: Volume) -> dict[str, Any]:
    """One volume as ``docker volume inspect`` shows it."""
    return {
        "CreatedAt": volume.created,
        "Driver": volume.driver,
        "Labels": dict(volume.labels),
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": dict(volume.options),
        "Scope": "local",
    }


def inspect(args: argparse.Namespace, store: VolumeStore, ctx: Context) -> int:
    found = []
    status = 0
    for name in args.names:
        try:
            found.append(details(store.get(name)))
        except ContainerRuntimeError as exc:
            report(exc)
            status = ENGINE_ERROR
    print(json.dumps(found, indent=4))
    return status


def remove(args: argparse.Namespace, store: VolumeStore, ctx: Context) -> int:
    records = load_records(ctx.config.containers_dir)

    def remove_one(name: str) -> str:
        # Looked up first: ``in_use`` runs under the store's lock and must not call back.
        try:
            mountpoint = store.get(name).mountpoint
        except VolumeNotFound:
            mountpoint = ""
        store.remove(name, in_use=lambda n: volume_user(records, n, mountpoint), force=args.force)
        return name

    return for_each(args.names, remove_one)
