"""Create and start a container; in the foreground, exit with its status."""

from __future__ import annotations

import argparse
import contextlib

from runtime.cli.context import Context
from runtime.cli.options import add_container_arguments, build_options
from runtime.cli.status import ENGINE_ERROR, report, start_failure_status
from runtime.cli.wire import WireClient
from runtime.errors import ContainerNotFound, ContainerRuntimeError, InvalidTransition


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    add_container_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    options = build_options(args)
    client = ctx.client()
    try:
        container_id = str(client.create(options)["Id"])
    except ContainerRuntimeError as exc:
        report(exc)
        return start_failure_status(exc)
    if args.detach:
        status = start(client, container_id, remove=args.rm)
        if status == 0:
            print(container_id)
        return status
    return run_attached(client, container_id, interactive=args.interactive, remove=args.rm)


def start(client: WireClient, container_id: str, *, remove: bool) -> int:
    """Start it; on failure, remove it if asked to, and return Docker's status (126, 127...)."""
    try:
        client.start(container_id)
    except ContainerRuntimeError as exc:
        if remove:
            with contextlib.suppress(ContainerRuntimeError):
                client.remove(container_id, force=True)
        report(exc)
        return start_failure_status(exc)
    return 0


def run_attached(
    client: WireClient,
    container_id: str,
    *,
    interactive: bool,
    remove: bool = False,
    restart: bool = False,
) -> int:
    """Start the container with this process's stdio joined to it; its exit status.

    A created container is attached first, so that no output is lost. One that ran before
    (``restart``) gets a new session when it starts, so it can only be attached after,
    without the old run's scrollback: what it prints before that is not shown (the engine
    cannot attach to an exited container yet).
    """
    from runtime.cli.stdio import Proxy

    if restart and (status := start(client, container_id, remove=remove)):
        return status
    try:
        channel = client.attach(container_id, replay=not restart, stdin=interactive)
    except InvalidTransition:
        if not restart:
            raise
        return wait_quietly(client, container_id)  # it has exited already
    with channel:
        proxy = Proxy(
            channel,
            stdin=interactive,
            tty=channel.tty,
            forward=lambda signum: client.kill(container_id, signum),
        )
        with proxy.installed():
            proxy.resize()
            if not restart and (status := start(client, container_id, remove=remove)):
                return status
            code = proxy.pump()
    if proxy.detached:
        return 0
    return code if code is not None else wait_quietly(client, container_id)


def wait_quietly(client: WireClient, container_id: str) -> int:
    """The exit status when the stream ended without one (the daemon restarted, say)."""
    try:
        return client.wait(container_id)
    except ContainerNotFound:
        report(ContainerRuntimeError(f"container {container_id[:12]} is gone: no exit status"))
        return ENGINE_ERROR
