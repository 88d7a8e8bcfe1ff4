"""Run the engine daemon in the foreground (other commands start it on demand)."""

from __future__ import annotations

import argparse
import logging

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="log debug messages")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Serves until SIGTERM or SIGINT; a second daemon for the same root refuses to start."""
    import asyncio

    from runtime.supervisor.daemon import Daemon

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(Daemon(ctx.config).serve())
    return 0
