"""Send a signal (default KILL) to running containers."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", default="KILL", help="signal name or number")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def parse_signal(text: str) -> str | int:
    """A number ("9") or a name ("TERM", "SIGTERM", "sigterm"), which the daemon resolves."""
    return int(text) if text.isdigit() else text.upper()


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    signal = parse_signal(args.signal)

    def kill(ref: str) -> str:
        client.kill(ref, signal)
        return ref

    return for_each(args.containers, kill)
