"""Shared fixtures: a busybox rootfs built from Debian's busybox-static, and OCI bundles."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"


def build_busybox_rootfs(dest: Path) -> Path:
    """A minimal rootfs: busybox, one link per applet, passwd/group, the usual folders."""
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = dest / applet
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    (dest / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (dest / "etc/group").write_text("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
    os.chmod(dest / "tmp", 0o1777)
    return dest


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed: run `make deps`")
    return build_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture
def fresh_rootfs(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Path]:
    dest = tmp_path / "bundle" / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    yield dest


# The site's fixtures (fake and real engine, Redis, Celery workers), shared by tests/unit,
# tests/site and tests/browser.
from tests.site_fixtures import (  # noqa: E402
    catalog,
    engine_process,
    fake_engine,
    memory_live,
    real_engine,
    redis_live,
    redis_url,
)

__all__ = [
    "catalog",
    "engine_process",
    "fake_engine",
    "memory_live",
    "real_engine",
    "redis_live",
    "redis_url",
]
