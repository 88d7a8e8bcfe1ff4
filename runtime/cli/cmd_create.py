"""Create a container from an image, without starting it; print its id."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.options import add_container_arguments, build_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_container_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    info = ctx.client().create(build_options(args))
    print(info["Id"])
    return 0
