"""Create a container and leave it waiting for start."""

from __future__ import annotations

import argparse

from runtime.oci.container import Runtime, Stdio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", "-b", default=".")
    parser.add_argument("--pid-file", default=None)
    parser.add_argument("--console-socket", default=None)
    parser.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preserve-fds", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("id")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    runtime.create(
        args.id,
        args.bundle,
        stdio=Stdio(console_socket=args.console_socket),
        pid_file=args.pid_file,
    )
    return 0
