"""An image's unpacked layers under a real overlayfs: whiteouts hide, opaque dirs hide,
upper layers win, exactly as in a container's root filesystem."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import linux
from runtime.image.bootstrap import BUSYBOX, bootstrap_busybox
from runtime.image.store import Image, ImageStore
from tests.unit.image_layers import add_image, directory, file, opaque, symlink, tar, whiteout

pytestmark = pytest.mark.root

LOWER = tar(
    directory("etc"),
    file("etc/keep", b"lower\n"),
    file("etc/gone", b"deleted above\n"),
    directory("etc/gone-dir"),
    file("etc/gone-dir/inner", b"x\n"),
    directory("var/cache"),
    file("var/cache/old", b"old\n"),
    file("var/cache/also-old", b"old\n"),
    file("shadowed", b"lower\n"),
)
MIDDLE = tar(
    whiteout("etc/gone"),
    whiteout("etc/gone-dir"),
    opaque("var/cache"),
    file("var/cache/new", b"new\n"),
    file("shadowed", b"middle\n"),
)
UPPER = tar(file("etc/gone", b"back again\n"), symlink("link", "/etc/keep"))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "images"))


def _mount(layers: list[str], tmp_path: Path) -> Iterator[Path]:
    merged, upper, work = (tmp_path / name for name in ("merged", "upper", "work"))
    for path in (merged, upper, work):
        path.mkdir()
    lower = ":".join(reversed(layers))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    linux.mount("overlay", str(merged), "overlay", linux.MS_NODEV, options)
    try:
        yield merged
    finally:
        linux.umount(str(merged), linux.MNT_DETACH)


@pytest.fixture
def merged(store: ImageStore, tmp_path: Path) -> Iterator[Path]:
    image = add_image(store, [LOWER, MIDDLE], tags=["layered"])
    yield from _mount(store.layer_paths(image), tmp_path)


def test_a_whiteout_hides_a_lower_file_and_directory(merged: Path) -> None:
    assert (merged / "etc/keep").read_bytes() == b"lower\n"
    assert not (merged / "etc/gone").exists()
    assert not (merged / "etc/gone-dir").exists()
    assert sorted(os.listdir(merged / "etc")) == ["keep"]


def test_an_opaque_directory_hides_lower_contents(merged: Path) -> None:
    assert sorted(os.listdir(merged / "var/cache")) == ["new"]


def test_a_higher_layer_wins(merged: Path) -> None:
    assert (merged / "shadowed").read_bytes() == b"middle\n"


def test_a_file_deleted_then_recreated_is_back(store: ImageStore, tmp_path: Path) -> None:
    image = add_image(store, [LOWER, MIDDLE, UPPER], tags=["three"])
    for root in _mount(store.layer_paths(image), tmp_path):
        assert (root / "etc/gone").read_bytes() == b"back again\n"
        assert os.readlink(root / "link") == "/etc/keep"
        assert sorted(os.listdir(root / "etc")) == ["gone", "keep"]


@pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="busybox-static missing")
def test_the_busybox_image_mounts_as_a_rootfs(store: ImageStore, tmp_path: Path) -> None:
    image: Image = bootstrap_busybox(store)
    for root in _mount(store.layer_paths(image), tmp_path):
        assert os.readlink(root / "bin/sh") == "/bin/busybox"
        (root / "tmp/scratch").write_text("writes go to the upper dir\n")
    assert (tmp_path / "upper/tmp/scratch").exists()
    assert not Path(store.layer_paths(image)[0], "tmp/scratch").exists()
