"""Run a command in a running container; exit with the command's status."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.options import complete_env
from runtime.cli.status import report, start_failure_status
from runtime.errors import ContainerRuntimeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-d", "--detach", action="store_true", help="run the command in the background")
    add("-i", "--interactive", action="store_true", help="keep stdin open")
    add("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    add("-e", "--env", action="append", default=[], metavar="VAR=VALUE")
    add("-w", "--workdir", help="working directory inside the container")
    add("-u", "--user", help="USER[:GROUP] or UID[:GID]")
    add("container", metavar="CONTAINER")
    add("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")


def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.command:
        from runtime.errors import InvalidArgument

        raise InvalidArgument("exec", "no command specified")
    client = ctx.client()
    try:
        exec_id = client.exec_create(
            args.container,
            list(args.command),
            tty=args.tty,
            env=complete_env(args.env) or None,
            workdir=args.workdir,
            user=args.user,
        )
    except ContainerRuntimeError as exc:
        report(exc)
        return start_failure_status(exc)
    if args.detach:
        return 0
    return attach_exec(ctx, exec_id, interactive=args.interactive, tty=args.tty)


def attach_exec(ctx: Context, exec_id: str, *, interactive: bool, tty: bool) -> int:
    from runtime.cli.stdio import Proxy

    client = ctx.client()
    with client.exec_attach(exec_id, tty=tty) as channel:
        if not interactive and not tty:
            channel.close_stdin()
        proxy = Proxy(channel, stdin=interactive, tty=tty)
        with proxy.installed():
            proxy.resize()
            code = proxy.pump()
    if proxy.detached:
        return 0
    return code if code is not None else client.exec_wait(exec_id)
