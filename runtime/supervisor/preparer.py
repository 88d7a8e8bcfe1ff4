"""What a container needs on the host before the keeper can spawn it: its user id range,
its rootfs and bind mounts, its /etc files and its config.json. The costly parts the next
container will need (a writable layer, a user namespace) are made ahead, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from runtime.config import EngineConfig
from runtime.container import idmap
from runtime.container import rootfs as overlay
from runtime.container.bundle import BindMount, build_config, write_bundle
from runtime.container.filesystems import mount_filesystems
from runtime.container.idmap import IdRange
from runtime.container.model import ContainerRecord
from runtime.errors import ContainerRuntimeError
from runtime.profile import Profile
from runtime.volumes import Volume, VolumeStore, parse_volume_spec

logger = logging.getLogger(__name__)

PREPARE_DELAY = 0.2  # seconds from a create to making what the next one will need


class Preparer:
    def __init__(self, config: EngineConfig, profile: Profile, volumes: VolumeStore) -> None:
        self.config = config
        self.profile = profile
        self.volumes = volumes
        self.namespaces = idmap.NamespacePool(profile.userns_size)
        self.spares = (
            overlay.WritablePool(
                config.tmp_dir,
                os.path.join(config.root, "templates"),
                profile.rootfs_size,
                profile.rootfs_inodes,
            )
            if profile.rootfs_size
            else None
        )
        self._background: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        if self.spares is not None:
            self.spares.discard_leftovers()

    def close(self) -> None:
        self.namespaces.close()
        if self.spares is not None:
            self.spares.close()

    def allocate_range(self, used: Iterable[int]) -> int:
        """A user id range for a new container (0: none), a ready one first."""
        if not self.profile.userns:
            return 0
        return idmap.allocate(used, self.profile.userns_size, prefer=self.namespaces.ready())

    def prepare_ahead(self, used: Iterable[int]) -> None:
        """Soon, in the background, make what the next container will need: its writable
        layer and the user namespace of the range it will get (``used``: bases in use)."""
        jobs: list[Callable[[], None]] = []
        if self.spares is not None:
            jobs.append(self.spares.prepare)
        if self.profile.userns:
            with contextlib.suppress(ContainerRuntimeError):
                base = idmap.allocate(used, self.profile.userns_size)
                jobs.append(lambda: self.namespaces.prepare(base))
        for job in jobs:
            task = asyncio.get_running_loop().create_task(_later(job))
            self._background.add(task)
            task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("preparing for the next container: %s", task.exception())

    async def prepare(
        self,
        record: ContainerRecord,
        container_dir: str,
        image_config: dict[str, Any],
        layers: list[str],
        cgroups_path: str,
    ) -> None:
        """Mount the container's file systems and write its bundle (config.json)."""
        profile = self.profile
        binds = self._binds(record)
        ids = IdRange(record.userns_base, profile.userns_size) if record.userns_base else None
        rootfs, mounted = await asyncio.to_thread(
            mount_filesystems,
            container_dir,
            layers,
            binds,
            profile,
            ids,
            self.namespaces,
            self.spares,
        )
        etc = _etc_files(record, overlay.writable_dir(container_dir), ids)
        config = build_config(
            container_id=record.id,
            options=record.options,
            image_config=image_config,
            rootfs=rootfs,
            binds=mounted,
            profile=profile,
            etc_files=etc,
            ids=ids,
        )
        config["linux"]["cgroupsPath"] = cgroups_path
        write_bundle(container_dir, config)
        record.args = list(config["process"]["args"])
        record.mounts = [vars(b) for b in binds]

    def _binds(self, record: ContainerRecord) -> list[BindMount]:
        binds = []
        for text in record.options.volumes:
            spec = parse_volume_spec(text)
            if spec.kind == "bind":
                if not os.path.exists(spec.source):
                    os.makedirs(spec.source, mode=0o755)
                source = spec.source
            else:
                name = spec.source if spec.kind == "named" else None
                try:
                    volume = self.volumes.get(name) if name else self._new_volume(None)
                except ContainerRuntimeError:
                    volume = self._new_volume(name)
                source = self.volumes.mountpoint(volume.name)
            binds.append(BindMount(source, spec.destination, spec.read_only))
        return binds

    def _new_volume(self, name: str | None) -> Volume:
        """A volume ``run -v`` makes: of the profile's size."""
        return self.volumes.create(name, size=self.profile.volume_size)


async def _later(job: Callable[[], None]) -> None:
    """After a pause: a create is usually followed at once by a start, and on a small host
    the two would compete for the CPU."""
    await asyncio.sleep(PREPARE_DELAY)
    await asyncio.to_thread(job)


def _etc_files(record: ContainerRecord, directory: str, ids: IdRange | None) -> dict[str, str]:
    hostname = record.options.hostname or record.id[:12]
    files = {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": (
            f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t{hostname}\n"
        ),
        "/etc/resolv.conf": "",
    }
    out = {}
    for dest, text in files.items():
        path = os.path.join(directory, os.path.basename(dest))
        with open(path, "w") as f:
            f.write(text)
        if ids is not None:
            os.chown(path, ids.base, ids.base)  # the container's root may edit them
        out[dest] = path
    return out
