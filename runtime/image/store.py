"""The engine's image store, laid out like an OCI image layout under ``images_dir``::

    blobs/sha256/<hex>        layer archives as received, manifests, configs
    layers/<diff_id hex>/     unpacked layers (overlayfs lower directories)
    layerdb/                  layer records (sizes; which blob unpacks to which layer)
    index.json                images and tags (an OCI image index, see ``index``)
    tmp/                      half-written blobs and layers, renamed in when complete
    locks/, *.lock            flock files: index writers, per-blob unpackers, leases

Content written outside an image (a pull in progress) is protected from ``gc`` by a
*lease*: a shared lock on ``lease.lock`` that ``put_blob``, ``ensure_layer`` and
``add_image`` take, and that a caller holds across a whole pull with ``with store.lease():``.
``gc`` and the content deletion in ``remove`` only run when they can take it exclusively.

Two stores on two roots never share anything; every path is derived from ``images_dir``.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runtime.errors import (
    BlobNotFound,
    ContainerRuntimeError,
    ImageNotFound,
    InvalidImage,
    InvalidLayer,
    InvalidReference,
)
from runtime.image import content
from runtime.image.blobs import BlobReader, BlobStore
from runtime.image.content import GcReport
from runtime.image.digest import canonical_json, check_digest
from runtime.image.index import (
    Entry,
    IndexFile,
    Snapshot,
    find,
    join,
    move_ref,
    snapshot,
    split,
    untag_for_remove,
)
from runtime.image.layers import LayerInfo, LayerStore
from runtime.image.locks import flocked, storage_errors
from runtime.image.manifest import LAYER_TYPES, OCI_MANIFEST, parse_diff_ids, parse_manifest
from runtime.image.reference import parse_reference
from runtime.image.stream import Readable
from runtime.image.unpack import DEFAULT_BUDGETS, Budgets

logger = logging.getLogger(__name__)

_SUBDIRS = ("blobs/sha256", "layers", "layerdb/sha256", "layerdb/blobs", "tmp", "locks")


@dataclass(frozen=True)
class Image:
    """An image in the store. ``config`` is shared with the store's cache: read it only."""

    id: str  # sha256:<config digest hex>
    manifest_digest: str
    repo_tags: list[str]  # familiar form, e.g. busybox:latest
    config: dict[str, Any]  # the OCI image config
    layers: list[str]  # diff_ids, lowest first
    created: str
    size: int  # bytes of file content in its (distinct) layers
    architecture: str
    os: str


def _nobody(image_id: str) -> str | None:
    return None


class ImageStore:
    def __init__(self, images_dir: str, *, budgets: Budgets = DEFAULT_BUDGETS) -> None:
        self.images_dir = images_dir
        if not os.path.isdir(os.path.join(images_dir, "locks")):
            # 0700: layers keep their setuid binaries, which no host user may reach.
            os.makedirs(images_dir, mode=0o700, exist_ok=True)
            for sub in _SUBDIRS:
                os.makedirs(os.path.join(images_dir, sub), mode=0o700, exist_ok=True)
        self.blobs = BlobStore(images_dir)
        self.layers = LayerStore(images_dir, budgets)
        self._index = IndexFile(images_dir)
        self._lease_path = os.path.join(images_dir, "lease.lock")
        self._docs: dict[str, dict[str, Any]] = {}
        self._images: dict[tuple[str, str, tuple[str, ...]], Image] = {}

    # -- blobs ------------------------------------------------------------------------

    @storage_errors
    def put_blob(
        self, data: bytes | Readable, *, expected: str | None = None, media_type: str = ""
    ) -> str:
        """Store ``data`` (bytes or a binary stream); returns its digest."""
        with self.lease():
            digest = self.blobs.put(data, expected=expected)
        logger.debug("stored blob %s (%s)", digest, media_type or "no media type")
        return digest

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has(digest)

    @storage_errors
    def read_blob(self, digest: str) -> bytes:
        """The blob's bytes, verified against its digest."""
        return self.blobs.read(digest)

    def open_blob(self, digest: str) -> BlobReader:
        """A reader that verifies the digest when read to the end (or on ``verify()``)."""
        return self.blobs.open(digest)

    def blob_path(self, digest: str) -> str:
        return self.blobs.path(digest)

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Keep ``gc`` away from content written meanwhile (hold it across a pull)."""
        with flocked(self._lease_path, shared=True):
            yield

    # -- layers -----------------------------------------------------------------------

    @storage_errors
    def ensure_layer(
        self, blob_digest: str, media_type: str = "", *, expected_diff_id: str | None = None
    ) -> LayerInfo:
        """Unpack the layer blob once (concurrent callers wait for the first) and return
        it; with ``expected_diff_id`` (from the image config) its diff_id must match."""
        if media_type and media_type not in LAYER_TYPES:
            raise InvalidLayer(blob_digest, f"unsupported layer media type {media_type!r}")
        if expected_diff_id is not None:
            check_digest(expected_diff_id, sha256_only=True)
        with self.lease():
            return self.layers.ensure(blob_digest, self.blobs.path(blob_digest), expected_diff_id)

    def layer_paths(self, image: Image) -> builtins.list[str]:
        """The image's layer directories, lowest first. A layer repeated higher up is kept
        only there (overlayfs refuses the same lower directory twice, and the higher copy
        hides everything the lower one would have shown)."""
        seen: set[str] = set()
        paths: builtins.list[str] = []
        for diff_id in reversed(image.layers):
            if diff_id not in seen:
                seen.add(diff_id)
                paths.append(self.layers.path(diff_id))
        paths.reverse()
        return paths

    # -- images -----------------------------------------------------------------------

    @storage_errors
    def add_image(
        self,
        manifest: dict[str, Any],
        config: dict[str, Any],
        *,
        tags: builtins.list[str],
        manifest_digest: str | None = None,
    ) -> Image:
        """Record an image whose config and layer blobs are stored and layers unpacked.
        The manifest is stored (canonical JSON) unless ``manifest_digest`` names the exact
        stored bytes it came from (a pulled manifest keeps its registry digest)."""
        refs = [self._tag_ref(tag) for tag in tags]
        with self.lease():
            image_id, entry = self._check_image(manifest, config, manifest_digest)
            with self._index.update() as entries:
                manifests, names = split(entries)
                manifests[image_id] = entry
                names.setdefault(image_id, [])
                for ref in refs:
                    move_ref(names, ref, image_id)
                entries[:] = join(manifests, names)
                snap = snapshot(tuple(entries))
        logger.info("added image %s tagged %s", image_id, refs)
        return self._image(snap, image_id)

    @storage_errors
    def resolve(self, ref_or_id: str) -> Image:
        """An image by tag (``busybox`` is docker.io/library/busybox:latest), by digest
        reference, by id (``sha256:<hex>``, the hex, or a unique prefix of 4+ digits)."""
        snap = self._index.read()
        image_id, _ = find(snap, ref_or_id)
        return self._image(snap, image_id)

    @storage_errors
    def list(self) -> builtins.list[Image]:
        """Every image, newest first; an image whose config is unreadable is skipped."""
        snap = self._index.read()
        images = []
        for image_id in snap.by_id:
            try:
                images.append(self._image(snap, image_id))
            except ContainerRuntimeError as exc:
                logger.warning("image %s is unreadable: %s", image_id, exc)
        return sorted(images, key=lambda image: (image.created, image.id), reverse=True)

    @storage_errors
    def tag(self, source: str, target: str) -> None:
        ref = self._tag_ref(target)
        with self._index.update() as entries:
            image_id, _ = find(snapshot(tuple(entries)), source)
            manifests, names = split(entries)
            move_ref(names, ref, image_id)
            entries[:] = join(manifests, names)
        logger.info("tagged image %s as %s", image_id, ref)

    @storage_errors
    def untag(self, reference: str) -> None:
        """Remove one tag; the image stays (untagged, if it was its last)."""
        ref = self._tag_ref(reference)
        with self._index.update() as entries:
            manifests, names = split(entries)
            owners = [image_id for image_id, refs in names.items() if ref in refs]
            if not owners:
                raise ImageNotFound(reference)
            names[owners[0]].remove(ref)
            entries[:] = join(manifests, names)

    @storage_errors
    def remove(
        self,
        ref_or_id: str,
        *,
        force: bool = False,
        in_use: Callable[[str], str | None] = _nobody,
    ) -> builtins.list[str]:
        """``docker rmi``: a tag of an image with other tags is only untagged; otherwise the
        image goes, with its layers and blobs no other image uses. ``in_use(image_id)``
        names a container using it (refused unless ``force``; its content is then kept
        for ``gc`` to weigh). Returns Docker's ``Untagged: ...``/``Deleted: ...`` lines."""
        with self._index.update() as entries:
            image_id, matched = find(snapshot(tuple(entries)), ref_or_id)
            manifests, names = split(entries)
            user = in_use(image_id)
            lines = untag_for_remove(ref_or_id, image_id, matched, names, force, user)
            if names[image_id]:
                entries[:] = join(manifests, names)
                return lines
            removed = manifests.pop(image_id)
            names.pop(image_id)
            entries[:] = join(manifests, names)
            lines.append(f"Deleted: {image_id}")
            if user is None:
                remaining = snapshot(tuple(entries))
                lines += self._free(remaining, image_id, removed.manifest_digest, in_use)
            else:
                content.set_orphans(self, content.orphans(self) | {image_id})
        logger.info("removed image %s: %s", image_id, lines)
        return lines

    @storage_errors
    def gc(self, *, keep_images: set[str] | None = None) -> GcReport:
        """Remove layers and blobs no image uses (nor the images in ``keep_images``, the
        ids containers still run from) and every leftover in tmp/. Skipped while a lease is
        held, since a pull's content is not referenced by an image yet."""
        with self.exclusive() as snap:
            if snap is None:
                logger.info("image gc skipped: a pull is in progress")
                return GcReport(skipped=True)
            manifests = {entry.manifest_digest for entry in snap.entries}
            keep = None if keep_images is None else set(keep_images)
            report = content.collect(self, set(snap.by_id), manifests, keep)
        logger.info("image gc: %s", report)
        return report

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Snapshot | None]:
        """The exclusive lease (None if a lease is held: never waits) and the index lock:
        nothing is being pulled or added while content is deleted."""
        with flocked(self._lease_path, blocking=False) as exclusive:
            if not exclusive:
                yield None
                return
            with self._index.locked() as snap:
                yield snap

    # -- internals --------------------------------------------------------------------

    def document(self, digest: str) -> dict[str, Any]:
        """A stored JSON object (manifest or config), verified once, then cached."""
        doc = self._docs.get(digest)
        if doc is None:
            try:
                doc = json.loads(self.blobs.read(digest))
            except ValueError as exc:
                raise InvalidImage(digest, "blob is not JSON") from exc
            if not isinstance(doc, dict):
                raise InvalidImage(digest, "blob is not a JSON object")
            self._docs[digest] = doc
        return doc

    def _check_image(
        self, manifest: dict[str, Any], config: dict[str, Any], manifest_digest: str | None
    ) -> tuple[str, Entry]:
        config_desc, layers = parse_manifest(manifest)
        diff_ids = parse_diff_ids(config)
        if len(layers) != len(diff_ids):
            raise InvalidImage(
                "manifest", f"{len(layers)} layers but the config has {len(diff_ids)} diff_ids"
            )
        if self.document(config_desc.digest) != config:
            raise InvalidImage(config_desc.digest, "config differs from the stored blob")
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            if not self.blobs.has(layer.digest):
                raise BlobNotFound(layer.digest)
            info = self.layers.for_blob(layer.digest)
            if info is None or info.diff_id != diff_id:
                raise InvalidImage(f"layer {layer.digest}", f"not unpacked as {diff_id}")
        if manifest_digest is None:
            manifest_digest = self.blobs.put(canonical_json(manifest))
        elif self.document(manifest_digest) != manifest:
            raise InvalidImage(manifest_digest, "manifest differs from the stored blob")
        media_type = str(manifest.get("mediaType", OCI_MANIFEST))
        size = self.blobs.size(manifest_digest)
        return config_desc.digest, Entry(config_desc.digest, manifest_digest, size, media_type)

    def _tag_ref(self, text: str) -> str:
        ref = parse_reference(text)
        if ref.digest is not None:
            raise InvalidReference(text, "a tag cannot include a digest")
        return str(ref)

    def _image(self, snap: Snapshot, image_id: str) -> Image:
        entry = snap.by_id[image_id]
        refs = tuple(snap.refs_of[image_id])
        key = (image_id, entry.manifest_digest, refs)
        image = self._images.get(key)
        if image is None:
            config = self.document(image_id)
            diff_ids = parse_diff_ids(config, image_id)
            image = Image(
                id=image_id,
                manifest_digest=entry.manifest_digest,
                repo_tags=[parse_reference(ref).familiar for ref in refs],
                config=config,
                layers=diff_ids,
                created=str(config.get("created", "")),
                size=sum(max(0, self.layers.size(d)) for d in dict.fromkeys(diff_ids)),
                architecture=str(config.get("architecture", "")),
                os=str(config.get("os", "")),
            )
            if len(self._images) > 4096:
                self._images.clear()
            self._images[key] = image
        return image

    def _free(
        self,
        remaining: Snapshot,
        image_id: str,
        manifest_digest: str,
        in_use: Callable[[str], str | None],
    ) -> builtins.list[str]:
        """Delete the removed image's content that nothing else uses, if no lease is held
        (else ``gc`` will)."""
        with flocked(self._lease_path, blocking=False) as exclusive:
            if not exclusive:
                return []
            return content.free(self, remaining, image_id, manifest_digest, in_use)
