"""Delete a stopped (or, with --force, any) container and its cgroup."""

from __future__ import annotations

import argparse

from runtime.errors import ContainerNotFound
from runtime.oci.container import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", "-f", action="store_true")
    parser.add_argument("id")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    try:
        runtime.delete(args.id, force=args.force)
    except ContainerNotFound:
        if not args.force:
            raise
    return 0
