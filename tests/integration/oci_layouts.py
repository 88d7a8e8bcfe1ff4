"""OCI image layouts built by the tests (for skopeo to copy into a registry), and comparing
an unpacked layer with the tree it was made from."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tree(root: Path, seed: str, *, big: int = 0) -> Path:
    """A small tree with files, modes, a nested folder, symlinks, a hardlink and an owner."""
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "etc" / f"{seed}.conf").write_text(f"name={seed}\n" * 50)
    (root / "etc" / "deep" / "er" / "leaf").write_bytes(hashlib.sha256(seed.encode()).digest())
    tool = root / "bin" / f"{seed}-tool"
    tool.write_bytes(b"#!/bin/sh\necho " + seed.encode() + b"\n")
    tool.chmod(0o4755)
    (root / "bin" / f"{seed}-link").symlink_to(f"{seed}-tool")
    (root / "etc" / "abs-link").symlink_to(f"/etc/{seed}.conf")
    os.link(tool, root / "bin" / f"{seed}-hard")
    private = root / "etc" / "private"
    private.write_text("secret\n")
    private.chmod(0o600)
    os.chown(private, 1000, 1000)
    (root / "etc" / "deep").chmod(0o750)
    if big:
        (root / "blob.bin").write_bytes(os.urandom(big))
    return root


def tar_tree(root: Path) -> bytes:
    """The tree as an uncompressed tar, entries sorted, like image builders write them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(_walk(root)):
            tar.add(path, arcname=os.path.relpath(path, root), recursive=False)
    return buffer.getvalue()


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        found += [Path(dirpath) / name for name in dirnames + filenames]
    return found


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=1).compress(data)
    return data


@dataclass
class Layer:
    source: Path
    compression: str
    blob: bytes
    diff_id: str

    @property
    def digest(self) -> str:
        return digest_of(self.blob)


def make_layer(source: Path, compression: str) -> Layer:
    raw = tar_tree(source)
    return Layer(source, compression, compress(raw, compression), digest_of(raw))


@dataclass
class Built:
    manifest: bytes
    config: bytes
    layers: list[Layer]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)


def build_image(layers: list[Layer], *, arch: str = "amd64", variant: str = "") -> Built:
    config: dict[str, Any] = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    if variant:
        config["variant"] = variant
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _desc(OCI_CONFIG, config_bytes),
        "layers": [_desc(LAYER_TYPES[layer.compression], layer.blob) for layer in layers],
    }
    return Built(json.dumps(manifest).encode(), config_bytes, layers)


def _desc(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


def index_of(images: list[tuple[Built, dict[str, str]]]) -> bytes:
    manifests = []
    for built, platform in images:
        manifests.append({**_desc(OCI_MANIFEST, built.manifest), "platform": platform})
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()


def write_layout(
    directory: Path, tag: str, images: list[Built], index: bytes | None = None
) -> None:
    """An OCI image layout holding ``images``; ``tag`` names the image, or the ``index`` of
    them when one is given."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for built in images:
        for data in (built.manifest, built.config, *(layer.blob for layer in built.layers)):
            (blobs / digest_of(data).partition(":")[2]).write_bytes(data)
    if index is not None:
        (blobs / digest_of(index).partition(":")[2]).write_bytes(index)
        top = _desc(OCI_INDEX, index)
    else:
        top = _desc(OCI_MANIFEST, images[0].manifest)
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}
    (directory / "index.json").write_text(json.dumps(document))


def snapshot_tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry below ``root``: type and mode bits, owner, content or link target, and
    which entries are hard links of each other."""
    entries: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for path in sorted(_walk(root)):
        name = os.path.relpath(path, root)
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            body: Any = ("link", os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            first = inodes.setdefault(st.st_ino, name) if st.st_nlink > 1 else name
            body = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), first)
        else:
            body = ("other",)
        entries[name] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            body,
        )
    return entries
