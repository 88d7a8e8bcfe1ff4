"""Show containers' CPU, memory and process counts, refreshed every second."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from runtime.cli import format as fmt
from runtime.cli.context import Context
from runtime.cli.wire import WireClient
from runtime.errors import ContainerRuntimeError

HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS")
_COLUMNS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "PIDs")
INTERVAL = 1.0
NO_STREAM_INTERVAL = 0.5  # CPU % needs two readings
CLEAR = "\033[2J\033[H"

Sample = tuple[float, dict[str, Any]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stream", action="store_true", help="print one reading and exit")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    memory_total = host_memory()
    previous = sample(client, args.containers)
    while True:
        time.sleep(NO_STREAM_INTERVAL if args.no_stream else INTERVAL)
        current = sample(client, args.containers)
        rows = [row(current[key], previous.get(key), memory_total) for key in current]
        previous = current
        render(rows, args.format, clear=not args.no_stream)
        if args.no_stream:
            return 0


def sample(client: WireClient, refs: list[str]) -> dict[str, Sample]:
    """One reading per container: those named (which must be running), else every running
    one (skipping any that stops meanwhile)."""
    if refs:
        return {ref: (time.monotonic(), client.stats(ref)) for ref in refs}
    readings = {}
    for info in client.list():
        try:
            readings[info["Id"]] = (time.monotonic(), client.stats(info["Id"]))
        except ContainerRuntimeError:
            continue
    return readings


def row(current: Sample, previous: Sample | None, memory_total: int) -> dict[str, str]:
    """One line of ``docker stats --format '{{json .}}'``."""
    when, data = current
    cpu = 0.0
    if previous is not None and when > previous[0]:
        used = data["cpu_usage_ns"] - previous[1]["cpu_usage_ns"]
        cpu = max(0.0, used / ((when - previous[0]) * 1e9) * 100)
    usage = int(data["memory_usage"])
    limit = int(data["memory_limit"] or memory_total)
    return {
        "ID": str(data["id"])[:12],
        "Container": str(data["id"])[:12],
        "Name": str(data.get("name", "")),
        "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{fmt.bytes_size(usage)} / {fmt.bytes_size(limit)}",
        "MemPerc": f"{usage / limit * 100 if limit else 0.0:.2f}%",
        "PIDs": str(data["pids_current"]),
    }


def render(rows: list[dict[str, str]], style: str, *, clear: bool) -> None:
    if style == "json":
        text = "\n".join(fmt.json_line(r) for r in rows)
    else:
        text = fmt.table(HEADERS, [[r[key] for key in _COLUMNS] for r in rows])
        text = (CLEAR if clear else "") + text
    if text:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def host_memory() -> int:
    """MemTotal, which Docker shows as the limit of an unlimited container."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
