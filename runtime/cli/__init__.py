"""The Docker-like command line: ``python -m runtime [--root DIR] COMMAND [ARG...]``.

One module per subcommand (``cmd_<name>``), each with ``add_arguments(parser)`` and
``run(args, ctx) -> int``. This module holds the dispatcher table and imports only the
chosen subcommand's module, so that ``run --rm IMAGE true`` loads argparse, the wire client
and little else. Container commands go through the daemon (started on demand); image and
volume commands work on the engine root in this process.

The engine root is ``--root``, else ``$PLAYGROUND_ROOT``, else /var/lib/playground; this is
the only place where the engine's environment is read.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from types import ModuleType

from runtime.cli.context import DEFAULT_ROOT, Context
from runtime.cli.status import (
    BROKEN_PIPE,
    ENGINE_ERROR,
    INTERRUPTED,
    CliParser,
    report,
)
from runtime.errors import ContainerRuntimeError, InvalidArgument

PROG = "python -m runtime"
ROOT_ENV = "PLAYGROUND_ROOT"

COMMANDS: dict[str, str] = {
    "run": "runtime.cli.cmd_run",
    "create": "runtime.cli.cmd_create",
    "start": "runtime.cli.cmd_start",
    "exec": "runtime.cli.cmd_exec",
    "attach": "runtime.cli.cmd_attach",
    "ps": "runtime.cli.cmd_ps",
    "inspect": "runtime.cli.cmd_inspect",
    "logs": "runtime.cli.cmd_logs",
    "stop": "runtime.cli.cmd_stop",
    "kill": "runtime.cli.cmd_kill",
    "rm": "runtime.cli.cmd_rm",
    "wait": "runtime.cli.cmd_wait",
    "stats": "runtime.cli.cmd_stats",
    "gc": "runtime.cli.cmd_gc",
    "images": "runtime.cli.cmd_images",
    "import": "runtime.cli.cmd_import",
    "tag": "runtime.cli.cmd_tag",
    "rmi": "runtime.cli.cmd_rmi",
    "save": "runtime.cli.cmd_save",
    "load": "runtime.cli.cmd_load",
    "bootstrap": "runtime.cli.cmd_bootstrap",
    "pull": "runtime.cli.cmd_pull",
    "push": "runtime.cli.cmd_push",
    "login": "runtime.cli.cmd_login",
    "logout": "runtime.cli.cmd_logout",
    "volume": "runtime.cli.cmd_volume",
    "daemon": "runtime.cli.cmd_daemon",
}

Run = Callable[[argparse.Namespace, Context], int]


def summary(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0]


class _HelpAction(argparse.Action):
    """Top-level help: the commands with their summaries (this imports every module)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show this help and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.print_help()
        print("\ncommands:")
        for name, path in COMMANDS.items():
            print(f"  {name:<10} {summary(importlib.import_module(path))}")
        print(f"\nRun '{PROG} COMMAND --help' for a command's flags.")
        parser.exit(0)


def top_parser() -> CliParser:
    parser = CliParser(prog=PROG, usage=f"{PROG} [--root DIR] COMMAND [ARG...]", add_help=False)
    parser.add_argument("-h", "--help", action=_HelpAction)
    parser.add_argument("--root", help=f"engine root (${ROOT_ENV}, else {DEFAULT_ROOT})")
    parser.add_argument("command", nargs="?", choices=COMMANDS, metavar="COMMAND")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def command_parser(name: str, module: ModuleType) -> CliParser:
    parser = CliParser(prog=f"{PROG} {name}", description=summary(module))
    module.add_arguments(parser)
    return parser


def resolve_root(flag: str | None, environ: Mapping[str, str]) -> str:
    """``--root``, else ``$PLAYGROUND_ROOT``, else the default; always absolute."""
    if flag is not None:
        root = flag
    elif ROOT_ENV in environ:
        root = environ[ROOT_ENV]
        if not root.strip():
            raise InvalidArgument(ROOT_ENV, "is set but empty")
    else:
        root = DEFAULT_ROOT
    return os.path.abspath(root)


def main(argv: list[str] | None = None) -> int:
    top = top_parser()
    ns = top.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.command is None:
        top.parse_args(["--help"])  # Docker prints its help when given no command
        return 0
    module = importlib.import_module(COMMANDS[ns.command])
    args = command_parser(ns.command, module).parse_args(ns.args)
    try:
        ctx = Context(resolve_root(ns.root, os.environ))
        run: Run = module.run
        return run(args, ctx)
    except ContainerRuntimeError as exc:
        report(exc)
        return ENGINE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except OSError as exc:  # a missing file, a root the caller may not read...
        report(exc)
        return ENGINE_ERROR


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so that the interpreter's final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
