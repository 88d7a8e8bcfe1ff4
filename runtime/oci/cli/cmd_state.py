"""Print the state of a container as JSON."""

from __future__ import annotations

import argparse
import json

from runtime.oci.container import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    print(json.dumps(runtime.state(args.id), indent="  "))
    return 0
