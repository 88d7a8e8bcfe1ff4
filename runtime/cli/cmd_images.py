"""List images."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from runtime.cli import format as fmt
from runtime.cli.context import Context

if TYPE_CHECKING:
    from runtime.image.store import Image

HEADERS = ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")
_COLUMNS = ("Repository", "Tag", "ID", "CreatedSince", "Size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only display image ids")
    parser.add_argument("--no-trunc", action="store_true", help="show full image ids")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from runtime.image.store import ImageStore

    images = ImageStore(ctx.config.images_dir).list()
    rows = [r for image in images for r in image_rows(image, trunc=not args.no_trunc)]
    if args.quiet:
        lines = list(dict.fromkeys(row["ID"] for row in rows))
    elif args.format == "json":
        lines = [fmt.json_line(row) for row in rows]
    else:
        lines = [fmt.table(HEADERS, [[row[key] for key in _COLUMNS] for row in rows])]
    if lines:
        print("\n".join(lines))
    return 0


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def image_rows(
    image: Image, *, trunc: bool = True, now: float | None = None
) -> list[dict[str, str]]:
    """One row per tag (``<none>`` for an untagged image), as ``docker images`` has them."""
    now = time.time() if now is None else now
    base = {
        "ID": short_id(image.id) if trunc else image.id,
        "CreatedAt": fmt.go_time(image.created),
        "CreatedSince": fmt.ago(image.created, now),
        "Size": fmt.human_size(image.size),
        "Containers": "N/A",
        "Digest": "<none>",
    }
    tags = list(image.repo_tags) or ["<none>:<none>"]
    rows = []
    for tag in tags:
        repository, _, name = tag.rpartition(":")
        if "/" in name or not repository:  # a registry port, not a tag
            repository, name = tag, "<none>"
        rows.append({**base, "Repository": repository, "Tag": name})
    return rows
