"""Create and start a container; in the foreground, exit with its process's status."""

from __future__ import annotations

import argparse

from runtime.oci.container import Runtime, Stdio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", "-b", default=".")
    parser.add_argument("--detach", "-d", action="store_true")
    parser.add_argument("--pid-file", default=None)
    parser.add_argument("--console-socket", default=None)
    parser.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("id")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    return runtime.run(
        args.id,
        args.bundle,
        stdio=Stdio(console_socket=args.console_socket),
        pid_file=args.pid_file,
        detach=args.detach,
    )
