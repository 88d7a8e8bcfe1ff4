"""Block until containers stop, then print their exit codes."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    return for_each(args.containers, ctx.client().wait)
