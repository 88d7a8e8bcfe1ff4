"""Show containers' low-level details as a JSON array."""

from __future__ import annotations

import argparse
import json

from runtime.cli.context import Context
from runtime.cli.status import ENGINE_ERROR, report
from runtime.errors import ContainerRuntimeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    found = []
    status = 0
    for ref in args.containers:
        try:
            found.append(client.inspect(ref))
        except ContainerRuntimeError as exc:
            report(exc)
            status = ENGINE_ERROR
    print(json.dumps(found, indent=4))
    return status
