"""Start the user process of a created container."""

from __future__ import annotations

import argparse

from runtime.oci.container import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    runtime.start(args.id)
    return 0
