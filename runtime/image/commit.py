"""Committing a one-layer image (an imported rootfs tarball, a bootstrapped rootfs): the
layer blob, its unpacked directory, an OCI config and manifest, all added to the store."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from runtime.errors import InvalidArchive
from runtime.image import content
from runtime.image.manifest import (
    LAYER_TYPE_BY_COMPRESSION,
    OCI_LAYER_TAR,
    Descriptor,
    config_descriptor,
    encode,
    new_config,
    new_manifest,
)
from runtime.image.store import Image, ImageStore
from runtime.image.stream import Readable, Source, TarStream, detect_compression

logger = logging.getLogger(__name__)


def now() -> str:
    """The current time as RFC 3339 in UTC, as image configs write it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def commit_layer(
    store: ImageStore,
    layer: Readable,
    *,
    tags: list[str],
    container_config: dict[str, Any],
    created: str,
    created_by: str,
    comment: str = "",
) -> Image:
    """Store the layer archive ``layer`` (tar, gzip or zstd kept as they are; xz and bzip2,
    which OCI has no media type for, stored decompressed), unpack it and add the image.
    On failure, the blobs and layer this call created are deleted again."""
    new_blobs: set[str] = set()
    new_layers: set[str] = set()
    try:
        with store.lease():
            blob, media_type = _put_layer(store, layer, new_blobs)
            unpacked = store.layers.for_blob(blob) is not None
            info = store.ensure_layer(blob, media_type)
            if not unpacked:
                new_layers.add(info.diff_id)
            entry: dict[str, Any] = {"created": created, "created_by": created_by}
            if comment:
                entry["comment"] = comment
            config = new_config(
                [info.diff_id], created=created, container_config=container_config, history=[entry]
            )
            config_bytes = encode(config)
            _put(store, config_bytes, new_blobs)
            layer_desc = Descriptor(media_type, blob, store.blobs.size(blob))
            manifest = new_manifest(config_descriptor(config_bytes), [layer_desc])
            return store.add_image(manifest, config, tags=tags)
    except BaseException:
        content.discard(store, new_blobs, new_layers)
        raise


def _put(store: ImageStore, data: bytes | Readable, new_blobs: set[str]) -> str:
    digest, created = store.blobs.put_new(data)
    if created:
        new_blobs.add(digest)
    return digest


def _put_layer(store: ImageStore, layer: Readable, new_blobs: set[str]) -> tuple[str, str]:
    source = Source(layer, None)
    compression = detect_compression(source.peek(6))
    media_type = LAYER_TYPE_BY_COMPRESSION.get(compression)
    if media_type is not None:
        return _put(store, source, new_blobs), media_type
    stream = TarStream(source, max_bytes=store.layers.budgets.max_bytes)
    return _put(store, stream, new_blobs), OCI_LAYER_TAR


@contextlib.contextmanager
def opened(source: Readable | str, label: str) -> Iterator[Readable]:
    """``source`` itself, or the file it names (``InvalidArchive`` if it cannot be read)."""
    if not isinstance(source, str):
        yield source
        return
    try:
        f = open(source, "rb")  # noqa: SIM115  # closed below
    except OSError as exc:
        raise InvalidArchive(label, exc.strerror or str(exc)) from exc
    with f:
        yield f
