"""The engine's frozen configuration: where its state lives. The engine never reads
``os.environ``; the CLI entry point builds this object."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_ROOT = "/var/lib/playground"


@dataclass(frozen=True)
class EngineConfig:
    root: str = DEFAULT_ROOT

    @property
    def images_dir(self) -> str:
        return os.path.join(self.root, "images")

    @property
    def containers_dir(self) -> str:
        return os.path.join(self.root, "containers")

    @property
    def volumes_dir(self) -> str:
        return os.path.join(self.root, "volumes")

    @property
    def oci_root(self) -> str:
        """State root of the low-level runtime (``runtime.oci``)."""
        return os.path.join(self.root, "oci")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, "engine.sock")

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.root, "tmp")
