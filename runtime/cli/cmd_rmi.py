"""Remove images (only the tag named, while the image has others)."""

from __future__ import annotations

import argparse

from runtime.cli.context import Context
from runtime.cli.records import image_user, load_records
from runtime.cli.status import for_each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="remove every tag of it")
    parser.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.store import ImageStore

    config = ctx.config
    store = ImageStore(config.images_dir)

    def in_use(image_id: str) -> str | None:
        return image_user(load_records(config.containers_dir), image_id)

    def remove(ref: str) -> str:
        return "\n".join(store.remove(ref, force=args.force, in_use=in_use))

    return for_each(args.images, remove)
