"""runtime.image.bootstrap: a reproducible busybox image, and the host's Debian mirror."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.errors import BootstrapError
from runtime.image.bootstrap import (
    BUSYBOX,
    DEBIAN_MIRROR,
    bootstrap_busybox,
    busybox_layer,
    default_mirror,
)
from runtime.image.store import ImageStore

pytestmark = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static missing")


def test_the_busybox_layer_is_reproducible() -> None:
    assert busybox_layer() == busybox_layer()


def test_bootstrap_busybox_builds_a_runnable_rootfs(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "images"))
    image = bootstrap_busybox(store)
    assert image.repo_tags == ["busybox:latest"]
    assert image.config["config"]["Cmd"] == ["sh"]
    assert image.config["config"]["Env"][0].startswith("PATH=")
    assert image.created == "2024-01-01T00:00:00Z"
    (layer,) = store.layer_paths(image)
    root = Path(layer)
    assert os.access(root / "bin/busybox", os.X_OK)
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert os.readlink(root / "usr/bin/env") == "/bin/busybox"
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "root").stat().st_mode) == 0o700
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert all((root / name).is_dir() for name in ("proc", "sys", "dev", "etc", "usr/sbin"))
    again = ImageStore(str(tmp_path / "other" / "images"))
    assert bootstrap_busybox(again).id == image.id


def test_bootstrap_busybox_says_when_busybox_is_missing(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "images"))
    with pytest.raises(BootstrapError, match="not usable"):
        bootstrap_busybox(store, busybox=str(tmp_path / "nothing"))


def _apt(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = tmp_path / "apt" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path / "apt")


def test_default_mirror_reads_deb822_sources(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
                "Components: main\nEnabled: no\n\n"
                "Types: deb\n# a comment\nURIs: http://security.example/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
            ),
            "sources.list": "deb http://one-line.example/debian bookworm main\n",
        },
    )
    assert default_mirror(apt) == "http://mirror.example/debian"


def test_default_mirror_reads_one_line_sources(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://src.example/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://opts.example/debian bookworm main\n"
            ),
        },
    )
    assert default_mirror(apt) == "http://opts.example/debian"
    assert default_mirror(apt, "trixie") == DEBIAN_MIRROR
    assert default_mirror(str(tmp_path / "none")) == DEBIAN_MIRROR


def test_default_mirror_of_this_host() -> None:
    assert default_mirror().startswith(("http://", "https://"))
