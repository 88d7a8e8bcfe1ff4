"""Layer archives built in tests, entry by entry (hostile ones included), and a store helper
that adds an image made of such layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any

import zstandard

from runtime.image.manifest import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    Descriptor,
    new_manifest,
)
from runtime.image.store import Image, ImageStore

Entry = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, mode: int, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, fields.pop("mtime", 1_600_000_000)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def file(name: str, data: bytes = b"data\n", mode: int = 0o644, **fields: Any) -> Entry:
    info = _info(name, tarfile.REGTYPE, mode, **fields)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755, **fields: Any) -> Entry:
    return _info(name, tarfile.DIRTYPE, mode, **fields), None


def symlink(name: str, target: str, **fields: Any) -> Entry:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **fields), None


def hardlink(name: str, target: str) -> Entry:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target), None


def device(name: str, kind: bytes = tarfile.CHRTYPE, major: int = 1, minor: int = 3) -> Entry:
    return _info(name, kind, 0o666, devmajor=major, devminor=minor), None


def fifo(name: str) -> Entry:
    return _info(name, tarfile.FIFOTYPE, 0o644), None


def whiteout(path: str) -> Entry:
    """The whiteout entry deleting ``path`` (a ``.wh.`` file next to it)."""
    parent, _, base = path.rpartition("/")
    return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"")


def opaque(directory_path: str) -> Entry:
    return file(f"{directory_path}/.wh..wh..opq", b"")


def tar(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add_image(
    store: ImageStore,
    layers: list[bytes],
    *,
    tags: list[str],
    created: str = "2024-01-01T00:00:00Z",
    cmd: list[str] | None = None,
) -> Image:
    """An image of the given (uncompressed) layer tars, stored gzipped, as a pull would."""
    descriptors = []
    diff_ids = []
    for layer in layers:
        blob = gz(layer)
        digest = store.put_blob(blob)
        info = store.ensure_layer(digest, OCI_LAYER_GZIP, expected_diff_id=sha256(layer))
        descriptors.append(Descriptor(OCI_LAYER_GZIP, digest, len(blob)))
        diff_ids.append(info.diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": cmd or ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(config).encode()
    config_digest = store.put_blob(config_bytes)
    manifest = new_manifest(Descriptor(OCI_CONFIG, config_digest, len(config_bytes)), descriptors)
    return store.add_image(manifest, config, tags=tags)
