"""Give an image another name."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.store import ImageStore

    ImageStore(ctx.config.images_dir).tag(args.source, args.target)
    return 0
