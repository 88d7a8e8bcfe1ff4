"""Run a new process inside a running container."""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

from runtime.errors import InvalidSpec
from runtime.oci.container import Runtime, Stdio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tty", "-t", action="store_true")
    parser.add_argument("--console-socket", default=None)
    parser.add_argument("--cwd", default=None)
    parser.add_argument("--env", "-e", action="append", default=[])
    parser.add_argument("--user", "-u", default=None, help="UID[:GID]")
    parser.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    parser.add_argument("--process", "-p", default=None, help="a process.json")
    parser.add_argument("--detach", "-d", action="store_true")
    parser.add_argument("--pid-file", default=None)
    parser.add_argument("--no-new-privs", action="store_true")
    parser.add_argument("id")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def build_process(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    if args.process:
        with open(args.process) as f:
            process: dict[str, Any] = json.load(f)
        return process
    process = copy.deepcopy(base)
    if not args.command:
        raise InvalidSpec("args", "exec needs a command")
    process["args"] = list(args.command)
    process["terminal"] = bool(args.tty)
    if args.cwd:
        process["cwd"] = args.cwd
    if args.env:
        process["env"] = list(process.get("env") or []) + list(args.env)
    if args.user:
        uid, _, gid = args.user.partition(":")
        try:
            process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidSpec("user", f"{args.user!r} is not UID[:GID]") from None
    if args.additional_gids:
        process.setdefault("user", {})["additionalGids"] = args.additional_gids
    if args.no_new_privs:
        process["noNewPrivileges"] = True
    process.pop("consoleSize", None)
    return process


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    base = runtime.store.load(args.id).config.get("process") or {}
    return runtime.exec(
        args.id,
        build_process(args, base),
        stdio=Stdio(console_socket=args.console_socket),
        pid_file=args.pid_file,
        detach=args.detach,
    )
