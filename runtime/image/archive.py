"""Image archives: ``import_tarball`` (``docker import``: a rootfs tarball becomes a
one-layer image), ``save`` (an OCI image layout tar that also carries Docker's
``manifest.json``, so both ``docker load`` and OCI tools read it) and ``load`` (see
``runtime.image.load``: OCI layouts and ``docker save`` tars)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import tarfile
from typing import IO, Any, BinaryIO, cast

from runtime.errors import ImageNotFound, InvalidArchive, InvalidReference
from runtime.image.commit import commit_layer, now, opened
from runtime.image.digest import hex_of
from runtime.image.load import archive_errors, load
from runtime.image.manifest import DEFAULT_PATH, OCI_INDEX, OCI_MANIFEST, parse_manifest
from runtime.image.reference import parse_reference
from runtime.image.store import Image, ImageStore
from runtime.image.stream import Readable

__all__ = ["import_tarball", "load", "save"]

logger = logging.getLogger(__name__)

CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def import_tarball(
    store: ImageStore,
    source: str | Readable,
    ref: str | None = None,
    *,
    config: dict[str, Any] | None = None,
) -> Image:
    """``docker import``: the rootfs tarball ``source`` (a path or a stream; tar, gzip,
    zstd, xz or bzip2) becomes a one-layer image, tagged ``ref`` if given. Its config has
    ``Env=[PATH=...]`` and no command, like Docker's; ``config`` overrides fields of it."""
    label = source if isinstance(source, str) else "stream"
    container_config: dict[str, Any] = {"Env": [DEFAULT_PATH], **(config or {})}
    tags = [ref] if ref else []
    if ref:
        parse_reference(ref)  # a bad name fails before anything is stored
    with archive_errors(label), opened(source, label) as layer:
        image = commit_layer(
            store,
            layer,
            tags=tags,
            container_config=container_config,
            created=now(),
            created_by="playground import",
            comment=f"Imported from {os.path.basename(label)}",
        )
    logger.info("imported %s as image %s", label, image.id)
    return image


def save(store: ImageStore, refs: list[str], out: str | BinaryIO) -> None:
    """Write the images ``refs`` (tags or ids) to ``out`` (a path, written atomically, or
    a binary stream) as an OCI image layout tar with Docker's ``manifest.json``."""
    images = _selection(store, refs)
    label = out if isinstance(out, str) else "stream"
    try:
        if not isinstance(out, str):
            _write_layout(store, images, out)
            return
        tmp = f"{out}.tmp-{secrets.token_hex(6)}"
        try:
            with open(tmp, "wb") as f:
                _write_layout(store, images, cast(BinaryIO, f))
            os.rename(tmp, out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise InvalidArchive(label, f"cannot write: {exc.strerror or exc}") from exc


def _selection(store: ImageStore, refs: list[str]) -> dict[str, tuple[Image, list[str]]]:
    """image id -> (image, canonical tags to write); a tag is written only if named."""
    selected: dict[str, tuple[Image, list[str]]] = {}
    for text in refs:
        image = store.resolve(text)
        tags = selected.setdefault(image.id, (image, []))[1]
        with contextlib.suppress(InvalidReference):
            ref = parse_reference(text)
            if ref.digest is None and ref.familiar in image.repo_tags and str(ref) not in tags:
                tags.append(str(ref))
    if not selected:
        raise ImageNotFound("(no image given)")
    return selected


def _write_layout(
    store: ImageStore, images: dict[str, tuple[Image, list[str]]], out: BinaryIO
) -> None:
    index: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    blobs: dict[str, None] = {}
    for image, tags in images.values():
        manifest = store.document(image.manifest_digest)
        _, layers = parse_manifest(manifest, image.manifest_digest)
        index += _index_entries(store, image, manifest, tags)
        docker.append(
            {
                "Config": _blob_name(image.id),
                "RepoTags": [parse_reference(tag).familiar for tag in tags],
                "Layers": [_blob_name(layer.digest) for layer in layers],
            }
        )
        blobs.update(dict.fromkeys([image.manifest_digest, image.id, *(d.digest for d in layers)]))
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}
    with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", _LAYOUT)
        _add_bytes(tar, "index.json", json.dumps(document).encode())
        _add_bytes(tar, "manifest.json", json.dumps(docker).encode())
        for name in ("blobs", "blobs/sha256"):
            tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
        for digest in blobs:
            _add_blob(store, tar, digest)


def _index_entries(
    store: ImageStore, image: Image, manifest: dict[str, Any], tags: list[str]
) -> list[dict[str, Any]]:
    """One descriptor per tag (containerd's and OCI's name annotations), or one untagged."""
    entry = {
        "mediaType": manifest.get("mediaType", OCI_MANIFEST),
        "digest": image.manifest_digest,
        "size": store.blobs.size(image.manifest_digest),
    }
    if not tags:
        return [entry]
    return [
        {**entry, "annotations": {CONTAINERD_IMAGE_NAME: tag, REF_NAME: parse_reference(tag).tag}}
        for tag in tags
    ]


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{hex_of(digest)}"


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))


def _add_blob(store: ImageStore, tar: tarfile.TarFile, digest: str) -> None:
    with store.open_blob(digest) as reader:
        info = _info(_blob_name(digest), tarfile.REGTYPE, 0o644, reader.size)
        tar.addfile(info, cast(IO[bytes], reader))
        reader.verify()
