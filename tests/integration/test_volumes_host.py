"""runtime.volumes on real loop devices and ext4 mounts.

Each test gets its own volumes directory; the fixture unmounts and detaches whatever is left
below it, even when the test fails, and then asserts that nothing was left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime import linux
from runtime.errors import InvalidArgument, VolumeError, VolumeInUse
from runtime.volumes import VolumeStore, disk, loop
from runtime.volumes.disk import MountEntry, read_mountinfo

MiB = 1 << 20

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/dev/loop-control"), reason="no loop devices"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="e2fsprogs is not installed"),
]


def mounts_below(root: str) -> list[str]:
    prefix = os.path.realpath(root) + "/"
    return [m.mount_point for m in read_mountinfo() if m.mount_point.startswith(prefix)]


def loops_below(root: str) -> list[str]:
    """Loop devices backed by a file below ``root``, read straight from sysfs."""
    prefix = os.path.realpath(root) + "/"
    found = []
    for name in os.listdir("/sys/block"):
        try:
            backing = Path("/sys/block", name, "loop", "backing_file").read_text()
        except (FileNotFoundError, NotADirectoryError):
            continue
        if backing.startswith(prefix):
            found.append(name)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def force_cleanup(root: str) -> None:
    for target in sorted(mounts_below(root), key=len, reverse=True):
        with contextlib.suppress(OSError):
            linux.umount(target, linux.MNT_DETACH)
    for name in loops_below(root):
        loop.detach(name)


class Procs:
    """Child processes a test starts; all of them are killed and reaped afterwards."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def sleeper_in(self, cwd: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "300"], cwd=cwd)
        self.procs.append(proc)
        return proc

    def holding(self, path: str) -> subprocess.Popen[bytes]:
        """A process that keeps ``path`` open (as its stdin) until stopped."""
        with open(path, "rb") as f:
            proc = subprocess.Popen(["sleep", "300"], stdin=f)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    force_cleanup(str(tmp_path))
    assert wait_for(lambda: not loops_below(str(tmp_path))), loops_below(str(tmp_path))
    assert mounts_below(str(tmp_path)) == []


@pytest.fixture
def procs(workdir: Path) -> Iterator[Procs]:
    p = Procs()
    yield p
    for proc in p.procs:
        p.stop(proc)


@pytest.fixture
def store(workdir: Path) -> VolumeStore:
    return VolumeStore(str(workdir / "volumes"))


def mount_of(path: str) -> MountEntry:
    entries = [m for m in read_mountinfo() if m.mount_point == os.path.realpath(path)]
    assert entries, f"{path} is not a mount point"
    return entries[-1]


def test_a_sized_volume_is_a_private_nosuid_nodev_ext4_mount(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    assert vol.size == 16 * MiB
    assert vol.options == {"size": str(16 * MiB)}
    entry = mount_of(vol.mountpoint)
    assert entry.fstype == "ext4"
    assert not entry.shared
    assert entry.source.startswith("/dev/loop")
    options = Path("/proc/self/mountinfo").read_text()
    line = next(ln for ln in options.splitlines() if f" {entry.mount_point} " in ln)
    assert "nosuid" in line.split()[5] and "nodev" in line.split()[5]
    image = os.path.join(store.root, "data", "disk.img")
    devices = loop.bound_to(image)
    assert [f"/dev/{d.name}" for d in devices] == [entry.source]
    assert os.stat(vol.mountpoint).st_uid == 0
    assert os.stat(image).st_blocks * 512 < 2 * MiB  # sparse


def test_filling_a_sized_volume_gives_enospc_and_spares_the_host(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    before = os.statvfs(store.root)
    fill = os.path.join(vol.mountpoint, "fill")
    result = subprocess.run(
        ["dd", "if=/dev/zero", f"of={fill}", "bs=64k"], capture_output=True, text=True
    )
    after = os.statvfs(store.root)
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    written = os.path.getsize(fill)
    assert 12 * MiB < written <= 16 * MiB
    image = os.path.join(store.root, "data", "disk.img")
    assert os.stat(image).st_blocks * 512 <= 16 * MiB
    host_used = (before.f_bavail - after.f_bavail) * before.f_frsize
    assert host_used < 20 * MiB


def test_deleting_files_gives_the_space_back_to_the_host(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    image = os.path.join(store.root, "data", "disk.img")
    Path(vol.mountpoint, "blob").write_bytes(b"x" * 8 * MiB)
    os.sync()
    assert os.stat(image).st_blocks * 512 >= 8 * MiB
    os.unlink(os.path.join(vol.mountpoint, "blob"))
    os.sync()
    assert wait_for(lambda: os.stat(image).st_blocks * 512 < 2 * MiB)


def test_remove_unmounts_detaches_and_deletes(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    assert loops_below(store.root)
    store.remove("data")
    assert mounts_below(store.root) == []
    assert loops_below(store.root) == []
    assert not os.path.exists(os.path.dirname(vol.mountpoint))
    assert store.list() == []


def test_it_remounts_lazily_after_an_unmount(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    Path(vol.mountpoint, "kept").write_text("still here")
    linux.umount(vol.mountpoint)  # what a reboot does; autoclear frees the loop device
    assert wait_for(lambda: not loops_below(store.root))
    restarted = VolumeStore(store.root)
    assert restarted.get("data") == vol
    assert restarted.mountpoint("data") == vol.mountpoint
    assert Path(vol.mountpoint, "kept").read_text() == "still here"
    assert restarted.mountpoint("data") == vol.mountpoint  # mounted once, not stacked
    assert len([m for m in mounts_below(store.root) if m == vol.mountpoint]) == 1


def test_remount_reuses_a_device_something_still_holds(store: VolumeStore, procs: Procs) -> None:
    vol = store.create("data", size=16 * MiB)
    device = mount_of(vol.mountpoint).source
    holder = procs.holding(device)
    linux.umount(vol.mountpoint)
    assert loops_below(store.root)  # the holder keeps it bound
    assert store.mountpoint("data") == vol.mountpoint
    assert mount_of(vol.mountpoint).source == device  # never two devices on one image
    procs.stop(holder)
    assert os.path.ismount(vol.mountpoint)


def test_remount_waits_out_a_device_that_is_going_away(
    store: VolumeStore, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol = store.create("data", size=16 * MiB)
    holder = procs.holding(mount_of(vol.mountpoint).source)
    linux.umount(vol.mountpoint)
    real_mount = disk._mount_private
    calls: list[str] = []

    def mount_fails_once(device: str, target: str) -> None:
        calls.append(device)
        if len(calls) == 1:  # what mounting a device in rundown gives; then it goes
            procs.stop(holder)
            raise OSError(errno.EIO, "mount: Input/output error", target)
        real_mount(device, target)

    monkeypatch.setattr(disk, "_mount_private", mount_fails_once)
    assert store.mountpoint("data") == vol.mountpoint
    assert len(calls) == 2
    assert os.path.ismount(vol.mountpoint)
    assert len(loops_below(store.root)) == 1


def test_a_corrupt_image_is_not_mounted(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    linux.umount(vol.mountpoint)
    assert wait_for(lambda: not loops_below(store.root))
    with open(os.path.join(store.root, "data", "disk.img"), "r+b") as f:
        f.write(b"\xff" * (1 * MiB))  # superblock and group descriptors
    with pytest.raises(VolumeError) as info:
        store.mountpoint("data")
    assert "e2fsck" in str(info.value)
    assert not os.path.ismount(vol.mountpoint)
    store.remove("data")


def test_remove_refuses_a_volume_in_use(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    with pytest.raises(VolumeInUse) as info:
        store.remove("data", in_use=lambda name: "3f2a9c1b7e4d5a6f")
    assert info.value.container_id == "3f2a9c1b7e4d5a6f"
    assert os.path.ismount(vol.mountpoint)
    assert store.get("data") == vol


def test_remove_while_a_process_holds_the_mount(store: VolumeStore, procs: Procs) -> None:
    vol = store.create("data", size=16 * MiB)
    holder = procs.sleeper_in(vol.mountpoint)
    store.remove("data")
    assert store.list() == []
    assert mounts_below(store.root) == []
    # The file system lives on, detached, for the holder; the device goes when it does.
    held = [d for d in loop.bound() if d.backing_file.startswith(os.path.realpath(store.root))]
    assert len(held) == 1 and held[0].deleted
    assert os.listdir(f"/proc/{holder.pid}/cwd") == ["lost+found"]
    procs.stop(holder)
    assert wait_for(lambda: not loops_below(store.root))


def test_create_returns_the_existing_sized_volume(store: VolumeStore) -> None:
    vol = store.create("data", size=16 * MiB)
    assert store.create("data") == vol
    assert store.create("data", size=16 * MiB) == vol
    with pytest.raises(InvalidArgument):
        store.create("data", size=32 * MiB)
    assert len(loops_below(store.root)) == 1


def test_list_and_inspect(store: VolumeStore) -> None:
    sized = store.create("sized", size=16 * MiB, labels={"lab": "1"})
    plain = store.create("plain")
    assert store.list() == [plain, sized]
    assert store.get("sized").labels == {"lab": "1"}


def test_an_unsized_volume_is_a_plain_directory(store: VolumeStore) -> None:
    vol = store.create("plain")
    assert os.path.isdir(vol.mountpoint)
    assert not os.path.ismount(vol.mountpoint)
    assert not os.path.exists(os.path.join(store.root, "plain", "disk.img"))
    assert loops_below(store.root) == []
    assert store.mountpoint("plain") == vol.mountpoint


def test_cleanup_orphans_tears_down_volumes_without_metadata(workdir: Path) -> None:
    mine = VolumeStore(str(workdir / "a" / "volumes"))
    other = VolumeStore(str(workdir / "b" / "volumes"))
    orphan = mine.create("orphan", size=16 * MiB)
    live = mine.create("live", size=16 * MiB)
    neighbour = other.create("orphan", size=16 * MiB)
    os.unlink(os.path.join(mine.root, "orphan", "volume.json"))
    assert mine.cleanup_orphans() == ["orphan"]
    assert not os.path.exists(os.path.dirname(orphan.mountpoint))
    assert os.path.ismount(live.mountpoint)
    assert os.path.ismount(neighbour.mountpoint)  # another root is never touched
    assert len(loops_below(mine.root)) == 1
    assert len(loops_below(other.root)) == 1


def test_cleanup_orphans_leaves_a_busy_mount(store: VolumeStore, procs: Procs) -> None:
    vol = store.create("orphan", size=16 * MiB)
    os.unlink(os.path.join(store.root, "orphan", "volume.json"))
    holder = procs.sleeper_in(vol.mountpoint)
    assert store.cleanup_orphans() == []
    assert os.path.ismount(vol.mountpoint)
    procs.stop(holder)
    assert store.cleanup_orphans() == ["orphan"]
    assert mounts_below(store.root) == []
    assert wait_for(lambda: not loops_below(store.root))


def test_volume_mounts_do_not_propagate_from_a_shared_parent(workdir: Path) -> None:
    shared = workdir / "shared"
    peer = workdir / "peer"
    shared.mkdir()
    peer.mkdir()
    linux.mount("tmpfs", str(shared), "tmpfs", 0, "size=64m")
    linux.mount(None, str(shared), None, linux.MS_SHARED)
    linux.mount(str(shared), str(peer), None, linux.MS_BIND)  # a peer of ``shared``
    store = VolumeStore(str(shared / "volumes"))
    vol = store.create("data", size=16 * MiB)
    assert os.path.ismount(vol.mountpoint)
    assert not os.path.ismount(peer / "volumes" / "data" / "_data")
    assert not mount_of(store.root).shared
    store.remove("data")
    assert wait_for(lambda: not loops_below(str(workdir)))


def test_concurrent_creates_get_distinct_devices(store: VolumeStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        vols = list(pool.map(lambda i: store.create(f"v{i}", size=16 * MiB), range(6)))
    sources = {mount_of(v.mountpoint).source for v in vols}
    assert len(sources) == 6
    for v in vols:
        store.remove(v.name)
    assert loops_below(store.root) == []
