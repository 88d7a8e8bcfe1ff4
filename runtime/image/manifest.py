"""OCI (and Docker schema 2) image manifests and configs: media types, validation, and the
documents we write ourselves for imported, loaded and bootstrapped images."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InvalidDigest, InvalidImage
from runtime.image.digest import canonical_json, check_digest, sha256_digest

logger = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
# Layers whose bytes we have (the "foreign"/"non-distributable" kinds included: what matters
# is that the blob is here; the unpacker detects the compression from the bytes).
LAYER_TYPES = frozenset(
    {
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)
LAYER_TYPE_BY_COMPRESSION = {"none": OCI_LAYER_TAR, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest}
        out["size"] = self.size
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def host_architecture() -> str:
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def parse_descriptor(value: Any, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidImage(what, "descriptor is not an object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise InvalidImage(what, "descriptor needs a mediaType and a digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidImage(what, f"descriptor {digest} has no valid size")
    try:
        check_digest(digest, sha256_only=True)
    except InvalidDigest as exc:
        raise InvalidImage(what, exc.message) from exc
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidImage(what, "annotations are not an object")
    return Descriptor(media_type, digest, size, {str(k): str(v) for k, v in annotations.items()})


def parse_manifest(manifest: Any, what: str = "manifest") -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of a single-platform image manifest."""
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise InvalidImage(what, "not a schema 2 image manifest")
    media_type = manifest.get("mediaType", OCI_MANIFEST)
    if media_type not in MANIFEST_TYPES:
        raise InvalidImage(what, f"unsupported manifest media type {media_type!r}")
    config = parse_descriptor(manifest.get("config"), what)
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise InvalidImage(what, "layers is not a list")
    parsed = [parse_descriptor(layer, what) for layer in layers]
    for layer in parsed:
        if layer.media_type not in LAYER_TYPES:
            raise InvalidImage(what, f"unsupported layer media type {layer.media_type!r}")
    return config, parsed


def parse_diff_ids(config: Any, what: str = "config") -> list[str]:
    """The validated ``rootfs.diff_ids`` of an image config."""
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidImage(what, "rootfs is missing or not of type layers")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidImage(what, "rootfs.diff_ids is not a list of digests")
    try:
        return [check_digest(d, sha256_only=True) for d in diff_ids]
    except InvalidDigest as exc:
        raise InvalidImage(what, exc.message) from exc


def new_config(
    diff_ids: list[str],
    *,
    created: str,
    container_config: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """An OCI image config for the host platform."""
    return {
        "architecture": host_architecture(),
        "os": "linux",
        "created": created,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": history,
    }


def config_descriptor(config: bytes) -> Descriptor:
    return Descriptor(OCI_CONFIG, sha256_digest(config), len(config))


def new_manifest(config: Descriptor, layers: list[Descriptor]) -> dict[str, Any]:
    """An OCI image manifest for ``config`` and ``layers``."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }


def encode(document: dict[str, Any]) -> bytes:
    return canonical_json(document)
