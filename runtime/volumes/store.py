"""Named volumes under one engine root: ``<volumes_dir>/<name>/`` holds ``volume.json``
(metadata, written atomically and last, so a directory without it is an orphan), ``_data``
(the directory containers bind-mount) and, for a sized volume, ``disk.img``, the sparse ext4
image mounted on ``_data`` through an autoclear loop device.

Every change is made under an flock on ``<volumes_dir>/.lock``, which serialises threads and
processes (the daemon, a CLI, the engine's gc) that share a root; roots never share state.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runtime.errors import InvalidArgument, VolumeError, VolumeInUse, VolumeNotFound
from runtime.volumes import disk, loop
from runtime.volumes.spec import NAME_RE, validate_name

logger = logging.getLogger(__name__)

DRIVER = "local"
METADATA = "volume.json"
DATA = "_data"
IMAGE = "disk.img"
MIN_SIZE = 1 << 20
_LOCK = ".lock"
_REMOVING = ".removing-"
_FORMAT_VERSION = 1

InUse = Callable[[str], str | None]


def _not_in_use(name: str) -> str | None:
    return None


@dataclass(frozen=True)
class Volume:
    """What ``docker volume inspect`` shows: ``created`` is RFC 3339 (UTC), ``size`` the
    limit in bytes (None: unlimited, a plain directory), ``mountpoint`` the host directory."""

    name: str
    mountpoint: str
    created: str
    size: int | None = None
    driver: str = DRIVER
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    options: dict[str, str] = field(default_factory=dict, hash=False)


def _reason(step: str, exc: OSError) -> str:
    """``"mount: device or resource busy: /path"``, for VolumeError."""
    text = (exc.strerror or str(exc)).lower()
    return f"{step}: {text}: {exc.filename}" if exc.filename else f"{step}: {text}"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class VolumeStore:
    """Docker-like local volumes. Sized volumes need root and loop devices; unsized ones
    are plain directories and need neither."""

    def __init__(self, volumes_dir: str) -> None:
        self.root = volumes_dir

    # -- paths ------------------------------------------------------------------------------

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _data(self, name: str) -> str:
        return os.path.join(self.root, name, DATA)

    def _image(self, name: str) -> str:
        return os.path.join(self.root, name, IMAGE)

    def _meta(self, name: str) -> str:
        return os.path.join(self.root, name, METADATA)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        fd = os.open(os.path.join(self.root, _LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- metadata ---------------------------------------------------------------------------

    def _read(self, name: str) -> Volume | None:
        if not NAME_RE.fullmatch(name):
            return None
        try:
            with open(self._meta(name)) as f:
                data = json.load(f)
            return Volume(
                name=name,
                mountpoint=self._data(name),
                created=str(data["created"]),
                size=None if data.get("size") is None else int(data["size"]),
                driver=str(data.get("driver", DRIVER)),
                labels=dict(data.get("labels") or {}),
                options=dict(data.get("options") or {}),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable is not the same as missing: cleanup_orphans keeps such a volume.
            logger.error("volume %s: unreadable %s: %s", name, METADATA, exc)
            return None

    def _write(self, volume: Volume) -> None:
        data = {
            "version": _FORMAT_VERSION,
            "name": volume.name,
            "created": volume.created,
            "size": volume.size,
            "driver": volume.driver,
            "labels": volume.labels,
            "options": volume.options,
        }
        _write_json_atomic(self._meta(volume.name), data)

    # -- public API -------------------------------------------------------------------------

    def get(self, name: str) -> Volume:
        volume = self._read(name)
        if volume is None:
            raise VolumeNotFound(name)
        return volume

    def list(self) -> list[Volume]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [v for v in map(self._read, names) if v is not None]

    def create(
        self,
        name: str | None = None,
        *,
        size: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> Volume:
        """Create a volume, or return the existing one of that name (as Docker does) unless
        it was created with a different size. ``name=None`` makes an anonymous volume."""
        name = validate_name(name) if name is not None else secrets.token_hex(32)
        if size is not None and size < MIN_SIZE:
            raise InvalidArgument("size", f"{size} bytes is below the 1 MiB minimum")
        with self._locked():
            existing = self._read(name)
            if existing is not None:
                if size is not None and size != existing.size:
                    raise InvalidArgument(
                        "size", f"volume {name} exists with size {existing.size}, not {size}"
                    )
                return existing
            volume = Volume(
                name=name,
                mountpoint=self._data(name),
                created=_now_rfc3339(),
                size=size,
                labels=dict(labels or {}),
                options={"size": str(size)} if size is not None else {},
            )
            self._provision(volume)
        logger.info("created volume %s (size %s)", name, size)
        return volume

    def _provision(self, volume: Volume) -> None:
        name = volume.name
        try:
            if os.path.lexists(self._dir(name)):
                logger.warning("volume %s: clearing a leftover without metadata", name)
                self._teardown(name)
            os.mkdir(self._dir(name), 0o700)
            os.mkdir(self._data(name), 0o755)
            if volume.size is not None:
                disk.make_image(self._image(name), volume.size)
                self._mount(name)
            self._write(volume)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._teardown(name)
            raise VolumeError(name, _reason("create", exc)) from exc

    def _mount(self, name: str) -> None:
        disk.ensure_private_parent(self.root)
        disk.mount_image(self._image(name), os.path.realpath(self._data(name)))

    def _mounted(self, name: str) -> bool:
        return bool(disk.mounts_at(os.path.realpath(self._data(name))))

    def mountpoint(self, name: str) -> str:
        """The host directory to bind-mount into a container. A sized volume is mounted
        first if it is not (after a reboot, or if something unmounted it)."""
        volume = self.get(name)
        if volume.size is None or self._mounted(name):
            return volume.mountpoint
        with self._locked():
            if self._read(name) is None:
                raise VolumeNotFound(name)
            if not self._mounted(name):
                try:
                    self._mount(name)
                except OSError as exc:
                    raise VolumeError(name, _reason("mount", exc)) from exc
        return volume.mountpoint

    def remove(self, name: str, *, in_use: InUse = _not_in_use, force: bool = False) -> None:
        """Remove a volume: refuse if ``in_use(name)`` names a container; unmount it, detach
        its loop device and delete its data. ``force`` (Docker's ``rm -f``) makes a missing
        volume success and purges the metadata even if tearing the data down fails; it does
        not override ``in_use``. ``in_use`` runs under the store's lock and must not call
        back into this store."""
        with self._locked():
            self._remove_locked(name, in_use, force)

    def _remove_locked(self, name: str, in_use: InUse, force: bool) -> None:
        if self._read(name) is None:
            if force:
                return
            raise VolumeNotFound(name)
        user = in_use(name)
        if user:
            raise VolumeInUse(name, user)
        try:
            self._teardown(name)
        except OSError as exc:
            if not force:
                raise VolumeError(name, _reason("remove", exc)) from exc
            logger.warning("volume %s: forced removal left data behind: %s", name, exc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._meta(name))
        logger.info("removed volume %s", name)

    def prune(self, in_use: InUse) -> builtins.list[str]:
        """Remove every volume that ``in_use`` does not claim; returns the names removed.
        A volume that fails to go is logged and kept."""
        removed: builtins.list[str] = []
        with self._locked():
            for volume in self.list():
                try:
                    self._remove_locked(volume.name, in_use, force=False)
                except (VolumeInUse, VolumeError) as exc:
                    logger.warning("prune: kept volume %s: %s", volume.name, exc)
                    continue
                removed.append(volume.name)
        return removed

    # -- teardown ---------------------------------------------------------------------------

    def _teardown(self, name: str) -> None:
        """Unmount (lazily: whoever still holds the file system keeps it until they let go),
        detach the loop device (deferred the same way), then delete. The directory is renamed
        away first, so the name is free at once and a crash leaves only an orphan."""
        vdir = os.path.realpath(self._dir(name))
        disk.unmount_below(vdir, lazy=True)
        for device in loop.bound_to(self._image(name)):
            loop.detach(device.name)
        doomed = os.path.join(self.root, _REMOVING + secrets.token_hex(8))
        try:
            os.rename(vdir, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed)

    def cleanup_orphans(self) -> builtins.list[str]:
        """For the engine's gc: tear down what belongs to no volume (a directory without
        metadata, left by a crash in create or remove). Mounts in use are left alone; a loop
        device still in use is only marked to detach when its last user goes. Returns the
        directory names that were removed."""
        cleaned: builtins.list[str] = []
        with self._locked():
            real_root = os.path.realpath(self.root)
            busy = self._unmount_orphans(real_root)
            for device in loop.bound():
                owner = _owner(device.backing_file, real_root)
                if owner is not None and not self._is_live(owner):
                    self._detach_orphan(device.name, owner)
            for entry in sorted(os.listdir(self.root)):
                path = os.path.join(self.root, entry)
                if entry == _LOCK or entry in busy or self._is_live(entry):
                    continue
                if not os.path.isdir(path) or os.path.islink(path):
                    continue  # not ours: volumes are directories
                shutil.rmtree(path, ignore_errors=True)
                cleaned.append(entry)
                logger.info("removed orphan volume directory %s", path)
        return cleaned

    @staticmethod
    def _detach_orphan(device: str, owner: str) -> None:
        try:
            loop.detach(device)
        except OSError as exc:
            logger.warning("could not detach orphan loop device %s (%s): %s", device, owner, exc)
            return
        logger.info("detached orphan loop device %s (%s)", device, owner)

    def _is_live(self, entry: str) -> bool:
        return bool(NAME_RE.fullmatch(entry)) and os.path.exists(self._meta(entry))

    def _unmount_orphans(self, real_root: str) -> set[str]:
        """Unmount (not lazily) every mount below the root whose volume has no metadata;
        returns the directory names still holding a busy mount."""
        busy: set[str] = set()
        mounts = disk.read_mountinfo()
        for target in sorted({m.mount_point for m in mounts}, key=len, reverse=True):
            owner = _owner(target, real_root)
            if owner is None or self._is_live(owner) or owner in busy:
                continue
            try:
                disk.unmount_below(target, lazy=False)
                logger.info("unmounted orphan volume mount %s", target)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise VolumeError(owner, _reason("cleanup", exc)) from exc
                logger.warning("orphan volume mount %s is busy; left in place", target)
                busy.add(owner)
        return busy


def _owner(path: str, real_root: str) -> str | None:
    """The top-level entry of the volumes directory that ``path`` lies in, if any."""
    prefix = real_root.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    return path[len(prefix) :].split("/", 1)[0] or None
