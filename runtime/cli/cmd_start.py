"""Start stopped containers; with -a, stream the output and exit with its status."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each
from runtime.cli.wire import WireClient
from runtime.errors import InvalidArgument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--attach", action="store_true", help="attach stdout and stderr")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise InvalidArgument("start", "you cannot start and attach multiple containers")
        return start_attached(client, args.containers[0], interactive=args.interactive)

    def start(ref: str) -> str:
        client.start(ref)
        return ref

    return for_each(args.containers, start)


def start_attached(client: WireClient, ref: str, *, interactive: bool) -> int:
    from runtime.cli.cmd_run import run_attached

    info = client.inspect(ref)
    restart = info["State"]["Status"] != "created"
    return run_attached(client, str(info["Id"]), interactive=interactive, restart=restart)
