"""Docker-like named volumes: plain directories, or size-limited ext4 images on loop devices
whose limit the kernel enforces (ENOSPC inside the container, the host's disk untouched).

``store`` owns the volumes of one engine root, ``disk`` the ext4 images and mounts, ``loop``
the loop devices and ``spec`` the parsing of names, sizes and ``-v`` arguments.
"""

from __future__ import annotations

from runtime.volumes.spec import VolumeSpec, parse_size, parse_volume_spec, validate_name
from runtime.volumes.store import Volume, VolumeStore

__all__ = [
    "Volume",
    "VolumeSpec",
    "VolumeStore",
    "parse_size",
    "parse_volume_spec",
    "validate_name",
]
