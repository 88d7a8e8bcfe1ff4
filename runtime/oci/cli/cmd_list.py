"""List containers (a table like runc's, or JSON)."""

from __future__ import annotations

import argparse
import json

from runtime.oci.container import Runtime

COLUMNS = ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", "-f", default="table", choices=["table", "json"])
    parser.add_argument("--quiet", "-q", action="store_true")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    states = runtime.list()
    if args.quiet:
        for st in states:
            print(st["id"])
    elif args.format == "json":
        print(json.dumps(states))
    else:
        rows = [COLUMNS] + [
            (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root")
            for s in states
        ]
        widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(COLUMNS) - 1)]
        for row in rows:
            print("".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + row[-1])
    return 0
