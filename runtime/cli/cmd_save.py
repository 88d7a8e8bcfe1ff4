"""Save images to a tar archive, which `load` (and Docker) can read (to stdout without -o)."""

from __future__ import annotations

import argparse
import os
import sys

from runtime.cli.context import Context
from runtime.errors import InvalidArgument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.archive import save
    from runtime.image.store import ImageStore

    if args.output is None and os.isatty(sys.stdout.fileno()):
        raise InvalidArgument("save", "refusing to write an archive to a terminal: use -o FILE")
    out = args.output if args.output is not None else sys.stdout.buffer
    save(ImageStore(ctx.config.images_dir), list(args.images), out)
    return 0
