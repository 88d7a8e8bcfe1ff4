"""Everything a container's config.json points at on the host: its rootfs overlay and, in a
user namespace, idmapped views of its volumes and host folders."""

from __future__ import annotations

import dataclasses
import os

from runtime.container import idmap
from runtime.container import rootfs as overlay
from runtime.container.bundle import BindMount
from runtime.container.idmap import IdRange, NamespacePool
from runtime.profile import Profile


def mount_filesystems(
    container_dir: str,
    layers: list[str],
    binds: list[BindMount],
    profile: Profile,
    ids: IdRange | None,
    namespaces: NamespacePool,
    spares: overlay.WritablePool | None = None,
) -> tuple[str, list[BindMount]]:
    """The rootfs (a mount point) and the binds to give the container instead of ``binds``.
    Without ``ids`` the binds are given as they are."""
    size, inodes = profile.rootfs_size, profile.rootfs_inodes
    if ids is None:
        rootfs = overlay.mount_overlay(layers, container_dir, size, inodes, spares=spares)
        return rootfs, binds
    userns = namespaces.take(ids.base)
    try:
        rootfs = overlay.mount_overlay(
            layers, container_dir, size, inodes, ids, userns, spares=spares
        )
        views = []
        for i, bind in enumerate(binds):
            view = os.path.join(container_dir, overlay.BINDS, str(i))
            idmap.bind_idmapped(bind.source, view, userns)
            views.append(dataclasses.replace(bind, source=view))
    finally:
        os.close(userns)
    return rootfs, views
