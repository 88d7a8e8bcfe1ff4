"""The ground user namespaces by default will stand on (docs/security.md): one image layer,
owned by host root, shared by two overlays through idmapped mounts, each showing it owned by
its own container's range of host uids. Nothing is copied; the layer never changes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import linux
from runtime.container import idmap

pytestmark = pytest.mark.root

FIRST, SECOND = 1 << 30, (1 << 30) + 65536  # two containers' ranges
PASSWD = "root:x:0:0:root:/root:/bin/sh\n"


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    root = tmp_path / "layer"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "home/user").mkdir(parents=True)
    os.chown(root / "home/user", 1000, 1000)
    return root


def _overlay(layer: Path, base: int, where: Path) -> Path:
    upper, work, merged = where / "upper", where / "work", where / "merged"
    for path in (upper, work, merged):
        path.mkdir(parents=True)
    os.chown(upper, base, base)  # the container's "/" belongs to its root
    ns = linux.userns_fd(base)
    lower = linux.idmapped_tree(str(layer), ns)
    fs = linux.fsopen("overlay")
    try:
        linux.fsconfig(fs, linux.FSCONFIG_SET_FD, "lowerdir+", aux=lower)
        linux.fsconfig(fs, linux.FSCONFIG_SET_STRING, "upperdir", str(upper))
        linux.fsconfig(fs, linux.FSCONFIG_SET_STRING, "workdir", str(work))
        linux.fsconfig(fs, linux.FSCONFIG_CMD_CREATE)
        mnt = linux.fsmount(fs, linux.MOUNT_ATTR_NODEV | linux.MOUNT_ATTR_NOSUID)
        try:
            linux.move_mount(mnt, str(merged))
        finally:
            os.close(mnt)
    finally:
        for fd in (fs, lower, ns):
            os.close(fd)
    return merged


@pytest.fixture
def overlays(layer: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    assert shutil.which("setpriv"), "setpriv (util-linux) is missing: run `make deps`"
    first = _overlay(layer, FIRST, tmp_path / "first")
    try:
        second = _overlay(layer, SECOND, tmp_path / "second")
        try:
            yield first, second
        finally:
            linux.umount(str(second), linux.MNT_DETACH)
    finally:
        linux.umount(str(first), linux.MNT_DETACH)


def _as(uid: int, cwd: Path, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` as host uid ``uid`` (what a container's process is, to the host), started
    in ``cwd`` (the test's folders above it are root's own, mode 0700)."""
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sh", "-c", script]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


def test_one_layer_is_shown_to_each_container_as_its_own(
    layer: Path, overlays: tuple[Path, Path]
) -> None:
    first, second = overlays
    assert os.stat(first / "etc/passwd").st_uid == FIRST
    assert os.stat(second / "etc/passwd").st_uid == SECOND
    assert os.stat(first / "home/user").st_uid == FIRST + 1000
    assert os.stat(layer / "etc/passwd").st_uid == 0


def test_a_containers_root_writes_its_copy_and_never_the_layer(
    layer: Path, overlays: tuple[Path, Path]
) -> None:
    first, second = overlays
    done = _as(FIRST, first / "etc", "echo intruder:x:0:0::/:/bin/sh >> passwd")
    assert done.returncode == 0, done.stderr
    upper = first.parent / "upper/etc/passwd"
    assert os.stat(upper).st_uid == FIRST  # copied up, still the container's root's
    assert (layer / "etc/passwd").read_text() == PASSWD
    assert (second / "etc/passwd").read_text() == PASSWD


def test_one_containers_root_is_nobody_to_another_containers_files(
    overlays: tuple[Path, Path],
) -> None:
    _, second = overlays
    done = _as(FIRST, second / "etc", "echo x >> passwd")
    assert done.returncode != 0
    assert "Permission denied" in done.stderr


@pytest.mark.parametrize("by_fd", [True, False], ids=["lowerdir+ descriptors", "attached"])
def test_the_engines_overlay_keeps_layer_order_and_leaves_no_mount(
    tmp_path: Path, by_fd: bool
) -> None:
    """``runtime.container.idmap.mount_overlay``, both ways (descriptors on 6.13+, layers
    attached for the time of the mount call before): the upper layer hides the lower one,
    owners read through the range, and nothing but the overlay stays mounted."""
    lower, upper_layer = tmp_path / "l0", tmp_path / "l1"
    for layer, text in ((lower, "lower"), (upper_layer, "upper")):
        (layer / "etc").mkdir(parents=True)
        (layer / "etc/which").write_text(text)
    (lower / "only-lower").write_text("x")
    where = tmp_path / "c"
    upper, work, merged = where / "upper", where / "work", where / "rootfs"
    for path in (upper, work, merged):
        path.mkdir(parents=True)
    before = _mount_points()
    ns = idmap.namespace_fd(idmap.IdRange(FIRST, 65536))
    try:
        idmap.mount_overlay(
            [str(lower), str(upper_layer)], str(upper), str(work), str(merged), ns, by_fd=by_fd
        )
    finally:
        os.close(ns)
    try:
        assert (merged / "etc/which").read_text() == "upper"
        assert (merged / "only-lower").exists()
        assert os.stat(merged / "etc/which").st_uid == FIRST
        assert _mount_points() - before == {str(merged)}
        assert not (where / "lower").exists() or not any((where / "lower").iterdir())
    finally:
        linux.umount(str(merged), linux.MNT_DETACH)


def _mount_points() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}
