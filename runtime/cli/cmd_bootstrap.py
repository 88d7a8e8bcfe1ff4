"""Build a base image (busybox or debian) from this host, without a registry."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=("busybox", "debian"))


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image import bootstrap
    from runtime.image.store import ImageStore

    build = bootstrap.bootstrap_busybox if args.name == "busybox" else bootstrap.bootstrap_debian
    image = build(ImageStore(ctx.config.images_dir))
    print(image.id)
    return 0
