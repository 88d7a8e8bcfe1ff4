"""List containers (running ones, or all with -a)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from runtime.cli import format as fmt
from runtime.cli.context import Context

HEADERS = ("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES")
COMMAND_WIDTH = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="show all containers")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace, ctx: Context) -> int:
    containers = ctx.client().list(all=args.all)
    rows = [summary(info, trunc=not args.no_trunc) for info in containers]
    if args.quiet:
        lines = [row["ID"] for row in rows]
    elif args.format == "json":
        lines = [fmt.json_line(row) for row in rows]
    else:
        cells = [[row[key] for key in _COLUMNS] for row in rows]
        lines = [fmt.table(HEADERS, cells)]
    if lines:
        print("\n".join(lines))
    return 0


_COLUMNS = ("ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names")


def summary(
    info: dict[str, Any], *, trunc: bool = True, now: float | None = None
) -> dict[str, str]:
    """One container as ``docker ps --format '{{json .}}'`` shows it."""
    now = time.time() if now is None else now
    command = " ".join([info["Path"], *info.get("Args", [])]) if info.get("Path") else ""
    labels = info.get("Config", {}).get("Labels") or {}
    return {
        "ID": info["Id"][:12] if trunc else info["Id"],
        "Image": info.get("Config", {}).get("Image", ""),
        "Command": fmt.quote(fmt.ellipsis(command, COMMAND_WIDTH) if trunc else command),
        "CreatedAt": fmt.go_time(info.get("Created")),
        "RunningFor": fmt.ago(info.get("Created"), now),
        "Status": fmt.container_status(info.get("State", {}), now),
        "State": str(info.get("State", {}).get("Status", "")),
        "Names": str(info.get("Name", "")).lstrip("/"),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(str(m.get("source", "")) for m in info.get("Mounts") or []),
        "Ports": "",
        "Networks": str(info.get("HostConfig", {}).get("NetworkMode", "")),
    }
