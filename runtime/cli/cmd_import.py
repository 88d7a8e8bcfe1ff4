"""Create an image from a root file system tarball ("-" for stdin); print its id."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tarball", metavar="TARBALL", help="a tar (or tar.gz) of a root file system, or -"
    )
    parser.add_argument("reference", metavar="NAME[:TAG]")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.archive import import_tarball
    from runtime.image.store import ImageStore

    source = sys.stdin.buffer if args.tarball == "-" else args.tarball
    image = import_tarball(ImageStore(ctx.config.images_dir), source, args.reference)
    print(image.id)
    return 0
