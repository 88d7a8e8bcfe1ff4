"""Stop running containers: SIGTERM, then SIGKILL after a grace period."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-t",
        "--time",
        "--timeout",
        type=float,
        default=10.0,
        dest="timeout",
        help="seconds to wait before killing (default 10)",
    )
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()

    def stop(ref: str) -> str:
        client.stop(ref, timeout=args.timeout)
        return ref

    return for_each(args.containers, stop)
