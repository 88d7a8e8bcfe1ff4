"""Exit statuses and error lines, Docker's way: 125 when the engine (or a flag) failed, 126
when the command cannot be invoked, 127 when it is not found; otherwise the container's own
status, which is already 128+N for a signal and 137 for an OOM kill.

The argument parser lives here too: Docker exits 125 on a bad flag, argparse would exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from runtime.errors import ContainerRuntimeError

ENGINE_ERROR = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127
INTERRUPTED = 130
BROKEN_PIPE = 141

# What moby's CLI looks for in a start error (cli/command/container/run.go).
_NOT_FOUND_TEXT = ("executable file not found", "no such file or directory")
_CANNOT_INVOKE_TEXT = ("permission denied", "is a directory", "exec format error")


def mark_from_daemon(exc: ContainerRuntimeError) -> ContainerRuntimeError:
    """Tag an error as the daemon's answer, so that its line says so."""
    exc.from_daemon = True  # type: ignore[attr-defined]
    return exc


def is_from_daemon(exc: BaseException) -> bool:
    return bool(getattr(exc, "from_daemon", False))


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the width: left alone, it imports shutil (and with it bz2
    and lzma) to ask, which is a tenth of the start-up budget of ``run``."""

    def __init__(self, prog: str) -> None:
        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except (OSError, ValueError):
            columns = 80
        super().__init__(prog, width=int(os.environ.get("COLUMNS", columns)) - 2)


class CliParser(argparse.ArgumentParser):
    """Exits 125 on a bad flag, as Docker does (argparse would exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(ENGINE_ERROR, f"Error: {message}\nSee '{self.prog} --help'.\n")


def error_line(exc: BaseException) -> str:
    """One line for people: Docker's "Error response from daemon: ..." for the daemon's
    errors, "Error: ..." for the rest."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    prefix = "Error response from daemon" if is_from_daemon(exc) else "Error"
    return f"{prefix}: {message}"


def report(exc: BaseException) -> None:
    print(error_line(exc), file=sys.stderr, flush=True)


def start_failure_status(exc: BaseException) -> int:
    """The status for a container (or exec) that failed to start: 127, 126 or 125."""
    text = str(exc).lower()
    if any(part in text for part in _NOT_FOUND_TEXT):
        return NOT_FOUND
    if any(part in text for part in _CANNOT_INVOKE_TEXT):
        return CANNOT_INVOKE
    return ENGINE_ERROR


def for_each(refs: Iterable[str], action: Callable[[str], object]) -> int:
    """Docker's multi-target commands: act on each target and print what ``action`` returns
    (unless None); report a failure and go on with the rest; 125 if anything failed."""
    status = 0
    for ref in refs:
        try:
            line = action(ref)
        except ContainerRuntimeError as exc:
            report(exc)
            status = ENGINE_ERROR
            continue
        if line is not None:
            print(line, flush=True)
    return status
