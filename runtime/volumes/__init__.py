"""Docker-like named volumes: plain directories, or size-limited ext4 images on loop devices
whose limit the kernel enforces (ENOSPC inside the container, the host's disk untouched).

``store`` owns the volumes of one engine root, ``disk`` the ext4 images and mounts, ``loop``
the loop devices and ``spec`` the parsing of names, sizes and ``-v`` arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.volumes.spec import VolumeSpec, parse_size, parse_volume_spec, validate_name

if TYPE_CHECKING:
    from runtime.volumes.store import Volume, VolumeStore


def __getattr__(name: str) -> Any:
    """The store (loop devices, mounts) loads on first use: parsing a size stays cheap."""
    if name in ("Volume", "VolumeStore"):
        from runtime.volumes import store

        return getattr(store, name)
    raise AttributeError(name)


__all__ = [
    "Volume",
    "VolumeSpec",
    "VolumeStore",
    "parse_size",
    "parse_volume_spec",
    "validate_name",
]
