"""Write a default, hardened config.json into the bundle."""

from __future__ import annotations

import argparse
import json
import os
import sys

from runtime.oci import spec
from runtime.oci.container import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", "-b", default=".")
    parser.add_argument("--rootless", action="store_true", help="accepted for runc compatibility")


def run(args: argparse.Namespace, runtime: Runtime) -> int:
    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        print("File config.json exists. Remove it first", file=sys.stderr)
        return 1
    with open(path, "w") as f:
        json.dump(spec.default_spec(), f, indent="\t")
        f.write("\n")
    return 0
