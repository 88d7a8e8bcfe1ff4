"""``load``: images from an OCI image layout tar or a ``docker save`` tar (old style:
``manifest.json``, ``<id>.json`` configs, ``<dir>/layer.tar``; new style: OCI blobs plus
``manifest.json``), possibly compressed, from a file or a stream.

The archive is read once, in order: every file goes straight into the blob store (OCI
blobs are verified against their names), small metadata files stay in memory. Then every
layer of every image is unpacked and checked against its config's diff_ids, and only then
are the images added, so a bad archive adds no image; the blobs and layers it brought in
are deleted again when no pull is running (else ``gc`` gets them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import (
    BlobNotFound,
    DigestMismatch,
    InvalidArchive,
    InvalidDigest,
    InvalidImage,
    InvalidLayer,
    InvalidReference,
)
from runtime.image import content
from runtime.image.commit import opened
from runtime.image.digest import check_digest
from runtime.image.manifest import (
    INDEX_TYPES,
    LAYER_TYPE_BY_COMPRESSION,
    OCI_CONFIG,
    Descriptor,
    host_architecture,
    new_manifest,
    parse_descriptor,
    parse_diff_ids,
    parse_manifest,
)
from runtime.image.reference import parse_reference
from runtime.image.store import Image, ImageStore
from runtime.image.stream import Readable, Rejected, TarStream, detect_compression, iter_members
from runtime.image.stream import open_tar as open_tar_stream

logger = logging.getLogger(__name__)

MAX_ARCHIVE_BYTES = 64 << 30
MAX_MEMBERS = 100_000
MAX_METADATA = 16 << 20
_METADATA = ("index.json", "manifest.json", "oci-layout")
_IGNORED = ("repositories", "json", "VERSION")  # legacy docker save files we do not need
_STORE_ERRORS = (
    BlobNotFound,
    DigestMismatch,
    InvalidDigest,
    InvalidImage,
    InvalidLayer,
    InvalidReference,
)


@dataclass
class _Archive:
    files: dict[str, str] = field(default_factory=dict)  # member name -> blob digest
    links: dict[str, str] = field(default_factory=dict)  # member name -> target member
    metadata: dict[str, bytes] = field(default_factory=dict)
    new_blobs: set[str] = field(default_factory=set)

    def blob(self, name: Any) -> str:
        current = _normalize(str(name))
        for _ in range(16):
            if current in self.files:
                return self.files[current]
            if current not in self.links:
                break
            current = self.links[current]
        raise Rejected(f"{name!r} is not in the archive")


@dataclass
class _Plan:
    manifest: dict[str, Any]
    manifest_digest: str | None
    config: dict[str, Any]
    layers: list[Descriptor]
    diff_ids: list[str]
    tags: list[str] = field(default_factory=list)


def load(store: ImageStore, source: str | Readable) -> list[Image]:
    """Add the images of the archive ``source`` (a path or a binary stream)."""
    label = source if isinstance(source, str) else "stream"
    archive = _Archive()
    new_layers: set[str] = set()
    try:
        with archive_errors(label), store.lease(), opened(source, label) as raw:
            _ingest(store, raw, archive)
            plans = _plans(store, archive)
            for plan in plans:
                new_layers |= _unpack(store, plan)
            images = [
                store.add_image(
                    p.manifest, p.config, tags=p.tags, manifest_digest=p.manifest_digest
                )
                for p in plans
            ]
    except BaseException:
        content.discard(store, archive.new_blobs, new_layers)
        raise
    content.discard(store, archive.new_blobs, new_layers)  # what no image ended up using
    logger.info("loaded %s: %s", label, [image.id for image in images])
    return images


@contextlib.contextmanager
def archive_errors(label: str) -> Iterator[None]:
    """Store errors met while reading an archive, reported as the archive's fault."""
    try:
        yield
    except Rejected as exc:
        raise InvalidArchive(label, exc.reason) from exc
    except _STORE_ERRORS as exc:
        raise InvalidArchive(label, str(exc)) from exc
    except OSError as exc:
        raise InvalidArchive(label, exc.strerror or str(exc)) from exc


def _ingest(store: ImageStore, raw: Readable, archive: _Archive) -> None:
    stream = TarStream(raw, max_bytes=MAX_ARCHIVE_BYTES)
    members = iter_members(open_tar_stream(stream, max_header=1 << 20))
    for count, info in enumerate(members, 1):
        if count > MAX_MEMBERS:
            raise Rejected(f"more than {MAX_MEMBERS} entries")
        name = _normalize(info.name)
        if info.issym():
            archive.links[name] = _normalize(posixpath.join(posixpath.dirname(name), info.linkname))
        elif info.islnk():
            archive.links[name] = _normalize(info.linkname)
        elif info.isreg() and posixpath.basename(name) not in _IGNORED:
            stream.seek(info.offset_data)
            member = _Member(stream, info.size, name)
            if name in _METADATA:
                if info.size > MAX_METADATA:
                    raise Rejected(f"{name} is larger than {MAX_METADATA} bytes")
                archive.metadata[name] = member.read()
            else:
                digest, created = store.blobs.put_new(member, expected=_digest_of(name))
                archive.files[name] = digest
                if created:
                    archive.new_blobs.add(digest)
    stream.finish()


class _Member:
    """One member's bytes from the archive stream; a short read means a truncated archive."""

    def __init__(self, stream: TarStream, size: int, name: str) -> None:
        self._stream, self._left, self._name = stream, size, name

    def read(self, size: int = -1, /) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(want)
        if len(data) < want:
            raise Rejected(f"archive ends inside {self._name}")
        self._left -= len(data)
        return data


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _digest_of(name: str) -> str | None:
    """``sha256:<hex>`` for an OCI blob path ``blobs/sha256/<hex>``."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            return check_digest(f"{parts[1]}:{parts[2]}", sha256_only=True)
        except InvalidDigest as exc:
            raise Rejected(f"{name}: {exc.reason}") from exc
    return None


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise Rejected(f"{what} is not valid JSON") from exc


def _plans(store: ImageStore, archive: _Archive) -> list[_Plan]:
    docker = _docker_manifest(archive)
    if "index.json" in archive.metadata:
        plans = _oci_plans(store, archive, docker)
    elif docker:
        plans = [_docker_plan(store, archive, item) for item in docker]
    else:
        raise Rejected("neither index.json nor manifest.json: not an image archive")
    if not plans:
        raise Rejected("the archive holds no image")
    return plans


def _docker_manifest(archive: _Archive) -> list[dict[str, Any]]:
    if "manifest.json" not in archive.metadata:
        return []
    items = _json(archive.metadata["manifest.json"], "manifest.json")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Rejected("manifest.json is not a list of objects")
    return items


def _oci_plans(store: ImageStore, archive: _Archive, docker: list[dict[str, Any]]) -> list[_Plan]:
    index = _json(archive.metadata["index.json"], "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise Rejected("index.json has no manifests list")
    repo_tags = {archive.blob(i.get("Config")): i.get("RepoTags") or [] for i in docker}
    plans: dict[str, _Plan] = {}
    for item in index["manifests"]:
        desc = _platform_manifest(store, parse_descriptor(item, "index.json"))
        plan = plans.get(desc.digest)
        if plan is None:
            config_desc, layers = parse_manifest(store.document(desc.digest), desc.digest)
            config = store.document(config_desc.digest)
            diff_ids = parse_diff_ids(config, config_desc.digest)
            plan = _Plan(store.document(desc.digest), desc.digest, config, layers, diff_ids)
            plan.tags.extend(repo_tags.get(config_desc.digest, []))
            plans[desc.digest] = plan
        plan.tags.extend(_annotated_names(item))
    for plan in plans.values():
        plan.tags = list(dict.fromkeys(str(parse_reference(t)) for t in plan.tags))
    return list(plans.values())


def _platform_manifest(store: ImageStore, desc: Descriptor) -> Descriptor:
    """A manifest descriptor; for an index, its manifest for this host (or its first)."""
    if desc.media_type not in INDEX_TYPES:
        return desc
    manifests = store.document(desc.digest).get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise Rejected(f"index {desc.digest} lists no manifests")
    for item in manifests:
        platform = item.get("platform") if isinstance(item, dict) else None
        if isinstance(platform, dict) and platform.get("architecture") == host_architecture():
            return parse_descriptor(item, desc.digest)
    return parse_descriptor(manifests[0], desc.digest)


def _annotated_names(item: dict[str, Any]) -> list[str]:
    """containerd's full name, or an OCI ref.name that is a full reference (not just a tag)."""
    annotations = item.get("annotations") or {}
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        name = annotations.get(key)
        if isinstance(name, str) and ("/" in name or ":" in name):
            return [name]
    return []


def _docker_plan(store: ImageStore, archive: _Archive, item: dict[str, Any]) -> _Plan:
    config_digest = archive.blob(item.get("Config"))
    config = store.document(config_digest)
    diff_ids = parse_diff_ids(config, config_digest)
    paths = item.get("Layers")
    if not isinstance(paths, list):
        raise Rejected("manifest.json: Layers is not a list")
    layers = [_layer_descriptor(store, archive.blob(path)) for path in paths]
    config_desc = Descriptor(OCI_CONFIG, config_digest, store.blobs.size(config_digest))
    tags = [str(parse_reference(t)) for t in item.get("RepoTags") or []]
    return _Plan(new_manifest(config_desc, layers), None, config, layers, diff_ids, tags)


def _layer_descriptor(store: ImageStore, digest: str) -> Descriptor:
    with open(store.blob_path(digest), "rb") as f:
        compression = detect_compression(f.read(6))
    media_type = LAYER_TYPE_BY_COMPRESSION.get(compression)
    if media_type is None:
        raise Rejected(f"layer {digest} is {compression}-compressed, which OCI images cannot be")
    return Descriptor(media_type, digest, store.blobs.size(digest))


def _unpack(store: ImageStore, plan: _Plan) -> set[str]:
    """Unpack every layer of ``plan``; the diff_ids that were not unpacked before."""
    if len(plan.layers) != len(plan.diff_ids):
        raise Rejected(f"{len(plan.layers)} layers but {len(plan.diff_ids)} diff_ids")
    new: set[str] = set()
    for layer, diff_id in zip(plan.layers, plan.diff_ids, strict=True):
        if store.layers.for_blob(layer.digest) is None:
            new.add(diff_id)
        store.ensure_layer(layer.digest, layer.media_type, expected_diff_id=diff_id)
    return new


def _add(store: ImageStore, plan: _Plan) -> Image:
    return store.add_image(
        plan.manifest, plan.config, tags=plan.tags, manifest_digest=plan.manifest_digest
    )
