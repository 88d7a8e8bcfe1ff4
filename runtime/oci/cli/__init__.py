"""The runc-compatible command line: ``python -m runtime.oci [--root DIR] [--debug] COMMAND``.

One module per subcommand; each exposes ``add_arguments(parser)`` and ``run(args, runtime)``
returning the exit status. This module holds the dispatcher table.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from types import ModuleType

from runtime.errors import ContainerRuntimeError
from runtime.oci.cli import (
    cmd_create,
    cmd_delete,
    cmd_exec,
    cmd_kill,
    cmd_list,
    cmd_run,
    cmd_spec,
    cmd_start,
    cmd_state,
)
from runtime.oci.container import Runtime
from runtime.oci.state import DEFAULT_ROOT

COMMANDS: dict[str, ModuleType] = {
    "spec": cmd_spec,
    "create": cmd_create,
    "start": cmd_start,
    "run": cmd_run,
    "exec": cmd_exec,
    "state": cmd_state,
    "kill": cmd_kill,
    "delete": cmd_delete,
    "list": cmd_list,
}
# Commands that fork container processes, and so must run from a sealed interpreter copy.
SPAWNING = frozenset({"create", "run", "exec"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime.oci", description=__doc__)
    parser.add_argument("--root", default=os.environ.get("PLAYGROUND_OCI_ROOT", DEFAULT_ROOT))
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--log", default=None, help="write log messages to this file")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        child = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(child)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING
    handler: logging.Handler = (
        logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    if args.subcommand in SPAWNING:
        from runtime.oci import selfexe

        selfexe.reexec_sealed()
    runtime = Runtime(args.root)
    run: Callable[[argparse.Namespace, Runtime], int] = COMMANDS[args.subcommand].run
    try:
        return run(args, runtime)
    except ContainerRuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
