"""Run the engine daemon in the foreground (other commands start it on demand)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    parser.add_argument(
        "--userns",
        choices=("private", "host"),
        default="private",
        help="containers in user namespaces of their own (default), or as host root "
        "(for hosts without idmapped overlayfs layers, Linux < 5.19)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Serves until SIGTERM or SIGINT; a second daemon for the same root refuses to start."""
    import asyncio

    from runtime.profile import DEFAULT_PROFILE
    from runtime.supervisor.daemon import Daemon

    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    profile = dataclasses.replace(DEFAULT_PROFILE, userns=args.userns == "private")
    asyncio.run(Daemon(ctx.config, profile).serve())
    return 0
