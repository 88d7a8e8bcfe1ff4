"""Remove containers (running ones only with -f)."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="kill it first if running")
    parser.add_argument("-v", "--volumes", action="store_true", help="accepted; volumes stay")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()

    def remove(ref: str) -> str:
        client.remove(ref, force=args.force)
        return ref

    return for_each(args.containers, remove)
