"""Load images from a tar archive made by `save` or `docker save` (from stdin without -i)."""

from __future__ import annotations

import argparse
import sys

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", metavar="FILE", help="read from FILE, not stdin")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.archive import load
    from runtime.image.store import ImageStore

    source = args.input if args.input is not None else sys.stdin.buffer
    for image in load(ImageStore(ctx.config.images_dir), source):
        lines = [f"Loaded image: {tag}" for tag in image.repo_tags]
        if not args.quiet:
            print("\n".join(lines or [f"Loaded image ID: {image.id}"]))
    return 0
