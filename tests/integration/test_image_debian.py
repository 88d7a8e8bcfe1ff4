"""debian:bookworm from debootstrap and the host's mirror (minutes; needs the network)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runtime.image.bootstrap import bootstrap_debian
from runtime.image.store import ImageStore

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap missing"),
]


def test_bootstrap_debian_builds_bookworm(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "images"))
    image = bootstrap_debian(store, cache_dir=str(tmp_path / "cache"))
    assert image.repo_tags == ["debian:bookworm"]
    assert image.config["config"]["Cmd"] == ["bash"]
    (layer,) = store.layer_paths(image)
    root = Path(layer)
    assert (root / "etc/debian_version").read_text().startswith("12.")
    assert os.access(root / "usr/bin/bash", os.X_OK)
    assert (root / "etc/resolv.conf").read_text() == ""
    assert not list((root / "var/lib/apt/lists").glob("*_Packages"))
    assert store.resolve("debian:bookworm").id == image.id
    assert os.listdir(os.path.join(store.images_dir, "tmp")) == []
