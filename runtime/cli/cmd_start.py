"""Start stopped containers; with -a, stream the output and exit with its status."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.status import for_each, report, start_failure_status
from runtime.cli.wire import WireClient
from runtime.errors import ContainerRuntimeError, InvalidArgument


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
    """A created container is attached before it starts, so no output is lost; a stopped
    one gets a new session at start, so it is attached after (without its old scrollback)."""
    from runtime.cli.cmd_run import wait_quietly
    from runtime.cli.stdio import Proxy

    info = client.inspect(ref)
    container_id = str(info["Id"])
    fresh = info["State"]["Status"] == "created"
    try:
        if not fresh:
            client.start(container_id)
        channel = client.attach(container_id, replay=fresh, stdin=interactive)
        with channel:
            proxy = Proxy(
                channel,
                stdin=interactive,
                tty=channel.tty,
                forward=lambda signum: client.kill(container_id, signum),
            )
            with proxy.installed():
                proxy.resize()
                if fresh:
                    client.start(container_id)
                code = proxy.pump()
    except ContainerRuntimeError as exc:
        report(exc)
        return start_failure_status(exc)
    if proxy.detached:
        return 0
    return code if code is not None else wait_quietly(client, container_id)
