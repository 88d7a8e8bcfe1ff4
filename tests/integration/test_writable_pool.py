"""Writable layers made ahead (``runtime.container.rootfs.WritablePool``): a taken one is a
mounted ext4 of the asked size at the container's folder; the ones never taken leave no
loop device and no file behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime import linux
from runtime.container import rootfs
from runtime.volumes import loop

pytestmark = pytest.mark.root

SIZE = 64 << 20


def test_a_prepared_layer_is_taken_mounted_and_given_back(tmp_path: Path) -> None:
    pool = rootfs.WritablePool(str(tmp_path / "tmp"), str(tmp_path / "templates"), SIZE, 4096)
    (tmp_path / "tmp").mkdir()
    pool.prepare()
    pool.prepare()
    pool.prepare()  # no more than KEEP are held
    spares = sorted((tmp_path / "tmp").glob(f"{pool.PREFIX}*"))
    assert len(spares) == pool.KEEP
    assert all(loop.bound_to(str(s)) for s in spares)
    container = tmp_path / "containers" / "c1"
    container.mkdir(parents=True)
    target = container / rootfs.WRITABLE
    target.mkdir()
    image = container / rootfs.WRITABLE_IMAGE
    try:
        assert pool.take(str(image), str(target))
        assert os.path.ismount(target)
        stats = os.statvfs(target)
        assert stats.f_blocks * stats.f_frsize <= SIZE
        assert stats.f_files <= 4096
        assert stats.f_flag & os.ST_NOSUID and stats.f_flag & os.ST_NODEV
        assert loop.bound_to(str(image))
    finally:
        linux.umount(str(target), linux.MNT_DETACH)
    pool.close()  # the one left: detached and deleted
    assert list((tmp_path / "tmp").glob(f"{pool.PREFIX}*")) == []
    assert _devices_below(tmp_path) == []  # autoclear, the taken one once unmounted
    assert not pool.take(str(image), str(target))


def _devices_below(path: Path) -> list[str]:
    """Loop devices backed by a file below ``path``, deleted files included (waits a
    little: a device is cleared when its last user goes)."""
    deadline = time.monotonic() + 5
    while True:
        found = [d.name for d in loop.bound() if d.backing_file.startswith(f"{path}/")]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_leftovers_of_a_dead_daemon_are_deleted(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    leftover = tmp_path / "tmp" / f"{rootfs.WritablePool.PREFIX}0123.img"
    leftover.write_bytes(b"x")
    other = tmp_path / "tmp" / "blob-1"
    other.write_bytes(b"y")
    rootfs.WritablePool(str(tmp_path / "tmp"), str(tmp_path / "t"), SIZE, None).discard_leftovers()
    assert not leftover.exists() and other.exists()
