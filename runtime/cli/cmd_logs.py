"""Print a container's logs: its stdout to stdout and its stderr to stderr."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.errors import InvalidArgument
from runtime.supervisor import protocol


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="follow the output")
    parser.add_argument(
        "-n", "--tail", default="all", help="lines to show from the end (default: all)"
    )
    parser.add_argument("container", metavar="CONTAINER")


def parse_tail(text: str) -> int | None:
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise InvalidArgument("--tail", f"{text!r} is not a number of lines or 'all'") from None
    return None if count < 0 else count


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.cli.stdio import write_all

    tail = parse_tail(args.tail)
    with ctx.client().logs(args.container, follow=args.follow, tail=tail) as channel:
        while (frame := channel.read()) is not None:
            kind, data = frame
            write_all(2 if kind == protocol.STDERR else 1, data)
    return 0
