"""Remove orphaned mounts, folders, cgroups, states, layers and volumes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, ctx: Context) -> int:
    report = ctx.client().gc()
    if args.format == "json":
        print(json.dumps(report, indent=4))
    else:
        print("\n".join(describe(report)))
    return 0


def describe(report: dict[str, Any]) -> list[str]:
    """One "Removed <kind>:" block per kind that had something to remove."""
    lines = []
    for kind, value in report.items():
        if isinstance(value, dict):
            items = [f"{k}: {v}" for k, v in value.items() if v]
        elif isinstance(value, list):
            items = [str(item) for item in value]
        else:
            items = [str(value)] if value else []
        if items:
            lines.append(f"Removed {kind}:")
            lines += [f"  {item}" for item in items]
    return lines or ["Nothing to remove"]
