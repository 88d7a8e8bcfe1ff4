"""`push`: the registry client (runtime.registry), in-process on this root's image store."""

from __future__ import annotations

import argparse
import os

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from runtime.registry.cli import add_push_arguments

    add_push_arguments(parser)


def _docker_config() -> str | None:
    base = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    path = os.path.join(base, "config.json")
    return path if os.path.exists(path) else None


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.registry.cli import push_command

    return push_command(args, ctx.root, docker_config=_docker_config())
