"""Attach this terminal to a running container's output (and input), scrollback first."""

from __future__ import annotations

import argparse
import os

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    parser.add_argument(
        "--sig-proxy",
        default="true",
        choices=("true", "false"),
        help="forward signals to the container (without a terminal)",
    )
    parser.add_argument("container", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Detaches on Ctrl-P Ctrl-Q (with a terminal) or at the end of a non-terminal stdin;
    returns the container's status if it exits meanwhile."""
    from runtime.cli.stdio import Proxy

    client = ctx.client()
    container_id = str(client.inspect(args.container)["Id"])
    stdin = not args.no_stdin
    with client.attach(container_id, replay=True, stdin=stdin) as channel:
        proxy = Proxy(
            channel,
            stdin=stdin,
            tty=channel.tty,
            forward=(lambda signum: client.kill(container_id, signum))
            if args.sig_proxy == "true"
            else None,
            detach_on_eof=not os.isatty(0),
        )
        with proxy.installed():
            proxy.resize()
            code = proxy.pump()
    return 0 if proxy.detached or code is None else code
