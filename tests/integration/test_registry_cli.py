"""The pull, push, login and logout commands' output, piped and on a (fake) terminal."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.registry import cli
from runtime.registry.display import bar, human_size
from tests.integration.fake_registry import FakeRegistry, run_fake_registry
from tests.integration.oci_layouts import Built, build_image, make_layer, make_tree

pytestmark = pytest.mark.registry


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def parse(add: object, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)  # type: ignore[operator]
    return parser.parse_args(argv)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeRegistry, Built]]:
    built = build_image([make_layer(make_tree(tmp_path / "src", "cli", big=100_000), "gzip")])
    registry = FakeRegistry()
    registry.add_image("test/img", "v1", built)
    with run_fake_registry(registry) as running:
        yield running, built


def test_piped_pull_prints_one_line_per_phase(
    tmp_path: Path, fake: tuple[FakeRegistry, Built]
) -> None:
    registry, built = fake
    ref = f"{registry.host}/test/img:v1"
    out = io.StringIO()
    assert cli.pull_command(parse(cli.add_pull_arguments, ref), str(tmp_path), out=out) == 0
    short = built.layers[0].digest[7:19]
    assert out.getvalue().splitlines() == [
        "v1: Pulling from test/img",
        f"{short}: Pulling fs layer",
        f"{short}: Downloading",
        f"{short}: Verifying Checksum",
        f"{short}: Download complete",
        f"{short}: Extracting",
        f"{short}: Pull complete",
        f"Digest: {built.digest}",
        f"Status: Downloaded newer image for {ref}",
        ref,
    ]
    again = io.StringIO()
    cli.pull_command(parse(cli.add_pull_arguments, ref), str(tmp_path), out=again)
    assert f"{short}: Already exists" in again.getvalue()
    assert f"Status: Image is up to date for {ref}" in again.getvalue()
    quiet = io.StringIO()
    cli.pull_command(parse(cli.add_pull_arguments, "-q", ref), str(tmp_path), out=quiet)
    assert quiet.getvalue() == ref + "\n"


def test_terminal_pull_redraws_layer_lines_in_place(
    tmp_path: Path, fake: tuple[FakeRegistry, Built]
) -> None:
    registry, _ = fake
    out = Terminal()
    ref = f"{registry.host}/test/img:v1"
    cli.pull_command(parse(cli.add_pull_arguments, ref), str(tmp_path), out=out)
    text = out.getvalue()
    assert "\x1b[1A\r\x1b[2K" in text
    assert "Downloading [" in text or "Pull complete" in text


def test_push_login_and_logout_commands(tmp_path: Path, fake: tuple[FakeRegistry, Built]) -> None:
    registry, _ = fake
    root = str(tmp_path / "root")
    ref = f"{registry.host}/test/img:v1"
    cli.pull_command(parse(cli.add_pull_arguments, "-q", ref), root, out=io.StringIO())

    args = parse(cli.add_login_arguments, "-u", "me", "--password-stdin", registry.host)
    out = io.StringIO()
    assert cli.login_command(args, root, stdin=io.StringIO("pw\n"), out=out) == 0
    assert out.getvalue() == "Login Succeeded\n"
    saved = json.loads((tmp_path / "root" / "auth.json").read_text())
    assert list(saved["auths"]) == [registry.host]

    out = io.StringIO()
    cli.logout_command(parse(cli.add_logout_arguments, registry.host), root, out=out)
    cli.logout_command(parse(cli.add_logout_arguments, registry.host), root, out=out)
    assert out.getvalue().splitlines() == [
        f"Removing login credentials for {registry.host}",
        f"Not logged in to {registry.host}",
    ]


def test_sizes_and_bars_look_like_docker() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_234_567, 52_428_800)] == [
        "0B",
        "999B",
        "1kB",
        "1.23MB",
        "52.4MB",
    ]
    assert bar(25, 100).startswith("[" + "=" * 11 + ">" + " " * 38 + "]")
    assert bar(100, 100).endswith("100B/100B")
