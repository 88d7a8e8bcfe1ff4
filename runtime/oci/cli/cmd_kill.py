"""Send a signal (name or number, default TERM) to a container's init."""

from __future__ import annotations

import argparse

from runtime.oci import spec
from runtime.oci.container import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", "-a", action="store_true", help="accepted for runc compatibility")
    parser.add_argument("id")
    parser.add_argument("signal", nargs="?", default="TERM")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    runtime.kill(args.id, spec.parse_signal(args.signal))
    return 0
