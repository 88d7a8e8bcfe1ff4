"""Build a base image (busybox or debian) from this host, without a registry; print its id."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=("busybox", "debian"))
    parser.add_argument("--tag", help="tag the image so (busybox:latest, debian:SUITE)")
    parser.add_argument("--suite", default="bookworm", help="debian only: the release")
    parser.add_argument("--mirror", help="debian only: the mirror (default: the host's)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image import bootstrap
    from runtime.image.store import ImageStore

    store = ImageStore(ctx.config.images_dir)
    if args.name == "busybox":
        image = bootstrap.bootstrap_busybox(store, tag=args.tag or "busybox:latest")
    else:
        image = bootstrap.bootstrap_debian(
            store, suite=args.suite, mirror=args.mirror, tag=args.tag
        )
    print(image.id)
    return 0
