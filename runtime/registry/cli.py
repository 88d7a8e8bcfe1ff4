"""What the command line's ``pull``, ``push``, ``login`` and ``logout`` run: each takes the
parsed arguments and the engine root, does its work in this process and prints like Docker.

The subcommand modules (``runtime/cli/cmd_pull.py``...) add these arguments and call these
functions; they pass ``docker_config``, the path of a Docker ``config.json`` to read
credentials from (``$DOCKER_CONFIG/config.json``), since only the entry point reads the
environment. The engine root holds ``registries.json`` (see ``config.load_config``) and
``auth.json`` (written by ``login``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from typing import TextIO

from runtime.config import EngineConfig
from runtime.errors import InvalidArgument
from runtime.image.reference import parse_reference
from runtime.image.store import ImageStore
from runtime.registry.auth import AUTH_FILE, AuthStore
from runtime.registry.config import CONFIG_NAME, RegistryConfig, load_config
from runtime.registry.display import LayerLines, show_pull_event, show_push_event
from runtime.registry.login import login, logout, registry_name
from runtime.registry.pull import pull
from runtime.registry.push import push

logger = logging.getLogger(__name__)


def _setup(root: str, docker_config: str | None) -> tuple[ImageStore, RegistryConfig, AuthStore]:
    store = ImageStore(EngineConfig(root).images_dir)
    config = load_config(os.path.join(root, CONFIG_NAME))
    return store, config, AuthStore(os.path.join(root, AUTH_FILE), docker_config=docker_config)


def _is_tty(out: TextIO) -> bool:
    return hasattr(out, "isatty") and out.isatty()


# -- pull -----------------------------------------------------------------------------


def add_pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", help="pull for this platform: OS/ARCH[/VARIANT]")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the reference")
    parser.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")


def pull_command(
    args: argparse.Namespace,
    root: str,
    *,
    docker_config: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    store, config, auth = _setup(root, docker_config)
    reference = parse_reference(args.reference)
    lines = LayerLines(out, tty=_is_tty(out))
    given = parse_reference(args.reference, default_tag=False)
    if not args.quiet and given.tag is None and given.digest is None:
        lines.line(f"Using default tag: {reference.tag}")
    if not args.quiet:
        lines.line(f"{reference.tag or reference.digest}: Pulling from {reference.path}")

    async def run() -> tuple[str, bool]:
        digest, fetched = "", False
        async for event in pull(
            store, args.reference, platform=args.platform, config=config, auth=auth
        ):
            fetched = fetched or event.phase == "downloading"
            if event.phase == "pulled":
                digest = event.digest
            elif not args.quiet:
                show_pull_event(lines, event)
        return digest, fetched

    digest, fetched = asyncio.run(run())
    if not args.quiet:
        lines.line(f"Digest: {digest}")
        status = "Downloaded newer image for" if fetched else "Image is up to date for"
        lines.line(f"Status: {status} {reference.familiar}")
    lines.line(str(reference))
    return 0


# -- push -----------------------------------------------------------------------------


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    parser.add_argument("image", metavar="IMAGE", help="an image of the store")
    parser.add_argument(
        "target", metavar="NAME[:TAG]", nargs="?", help="where to push it (default: IMAGE)"
    )


def push_command(
    args: argparse.Namespace,
    root: str,
    *,
    docker_config: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    store, config, auth = _setup(root, docker_config)
    target = parse_reference(args.target or args.image)
    lines = LayerLines(out, tty=_is_tty(out))
    if not args.quiet:
        lines.line(f"The push refers to repository [{target.name}]")

    async def run() -> tuple[str, int]:
        async for event in push(store, args.image, args.target, config=config, auth=auth):
            if event.phase == "pushed":
                return event.digest, event.total
            if not args.quiet:
                show_push_event(lines, event)
        raise AssertionError("push ended without a manifest")

    digest, size = asyncio.run(run())
    if args.quiet:
        lines.line(digest)
    else:
        lines.line(f"{target.tag or 'latest'}: digest: {digest} size: {size}")
    return 0


# -- login and logout -----------------------------------------------------------------


def add_login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--username", help="user name")
    parser.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    parser.add_argument("server", metavar="SERVER", nargs="?", default="docker.io")


def login_command(
    args: argparse.Namespace,
    root: str,
    *,
    docker_config: str | None = None,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    _, config, auth = _setup(root, docker_config)
    username, password = _login_input(args, stdin, out)
    asyncio.run(login(args.server, username, password, auth, config=config))
    out.write("Login Succeeded\n")
    return 0


def _login_input(args: argparse.Namespace, stdin: TextIO, out: TextIO) -> tuple[str, str]:
    if args.password_stdin and args.password:
        raise InvalidArgument("--password-stdin", "cannot be used with --password")
    if args.password_stdin and not args.username:
        raise InvalidArgument("--password-stdin", "needs --username")
    if args.password:
        print(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
            file=sys.stderr,
        )
    username = args.username
    if not username:
        out.write("Username: ")
        out.flush()
        username = stdin.readline().strip()
    if args.password_stdin:
        password = stdin.read().rstrip("\r\n")
    elif args.password:
        password = args.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise InvalidArgument("login", "username and password are both required")
    return username, password


def add_logout_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server", metavar="SERVER", nargs="?", default="docker.io")


def logout_command(args: argparse.Namespace, root: str, *, out: TextIO = sys.stdout) -> int:
    auth = AuthStore(os.path.join(root, AUTH_FILE))
    name = registry_name(args.server)
    if logout(args.server, auth):
        out.write(f"Removing login credentials for {name}\n")
    else:
        out.write(f"Not logged in to {name}\n")
    return 0
