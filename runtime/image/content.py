"""Which stored content is still referenced, and deleting what is not: ``gc`` and the
content half of ``remove``. Callers hold the index lock and the exclusive lease, so no image
is being added and no pull is writing while this runs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.errors import ContainerRuntimeError
from runtime.image.digest import check_digest
from runtime.image.index import Snapshot
from runtime.image.layerfs import remove_tree
from runtime.image.locks import TMP_MARK
from runtime.image.manifest import parse_diff_ids, parse_manifest

if TYPE_CHECKING:
    from runtime.image.store import ImageStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GcReport:
    layers: list[str] = field(default_factory=list)  # diff_ids removed
    blobs: list[str] = field(default_factory=list)  # blob digests removed
    tmp: list[str] = field(default_factory=list)  # leftovers removed from tmp/
    skipped: bool = False  # a lease was held (a pull in progress): nothing was removed


def referenced(
    store: ImageStore,
    image_ids: set[str],
    manifests: set[str],
    orphans: AbstractSet[str] = frozenset(),
) -> tuple[set[str], set[str]]:
    """(diff_ids, blob digests) used by ``manifests`` and the images ``image_ids``, and by
    ``orphans``: images no longer in the index that containers still run from (removed
    with force), whose layer blobs are found through the layers they unpack to."""
    layers: set[str] = set()
    blobs: set[str] = set(manifests)
    for digest in manifests:
        try:
            _, descriptors = parse_manifest(store.document(digest), digest)
        except ContainerRuntimeError as exc:
            logger.warning("manifest %s is unreadable: %s", digest, exc)
            continue
        blobs.update(d.digest for d in descriptors)
    orphan_layers: set[str] = set()
    for image_id in image_ids | orphans:
        try:
            check_digest(image_id, sha256_only=True)
            diff_ids = parse_diff_ids(store.document(image_id), image_id)
        except ContainerRuntimeError as exc:
            logger.warning("config of image %s is unreadable: %s", image_id, exc)
            continue
        layers.update(diff_ids)
        if image_id in orphans:
            orphan_layers.update(diff_ids)
        blobs.add(image_id)
    if orphan_layers:
        mapping = store.layers.blob_map().items()
        blobs.update(blob for blob, diff_id in mapping if diff_id in orphan_layers)
    return layers, blobs


def collect(
    store: ImageStore, image_ids: set[str], manifests: set[str], orphans: set[str]
) -> GcReport:
    layers, blobs = referenced(store, image_ids, manifests, orphans - image_ids)
    removed_layers = sorted(store.layers.diff_ids() - layers)
    for diff_id in removed_layers:
        store.layers.remove(diff_id)
    removed_blobs = sorted(set(store.blobs.digests()) - blobs)
    for digest in removed_blobs:
        store.blobs.remove(digest)
    for blob, diff_id in store.layers.blob_map().items():
        if blob not in blobs or diff_id not in layers:
            store.layers.forget_blob(blob)
    return GcReport(removed_layers, removed_blobs, _clear_leftovers(store))


def free(store: ImageStore, remaining: Snapshot, image_id: str, manifest_digest: str) -> list[str]:
    """Delete what the removed image used and ``remaining`` images do not; Docker's
    ``Deleted: <layer>`` lines."""
    layers, blobs = referenced(
        store, set(remaining.by_id), {entry.manifest_digest for entry in remaining.entries}
    )
    lines: list[str] = []
    try:
        diff_ids = parse_diff_ids(store.document(image_id), image_id)
        _, descriptors = parse_manifest(store.document(manifest_digest), manifest_digest)
    except ContainerRuntimeError as exc:
        logger.warning("image %s: content left for gc: %s", image_id, exc)
        return lines
    for diff_id in dict.fromkeys(diff_ids):
        if diff_id not in layers:
            store.layers.remove(diff_id)
            lines.append(f"Deleted: {diff_id}")
    for digest in [manifest_digest, image_id, *(d.digest for d in descriptors)]:
        if digest not in blobs:
            store.blobs.remove(digest)
            store.layers.forget_blob(digest)
    return lines


def discard(store: ImageStore, blobs: set[str], layers: set[str]) -> None:
    """Delete ``blobs`` and ``layers`` that a load brought in, unless an image uses them;
    left for ``gc`` while a lease is held."""
    if not blobs and not layers:
        return
    with store.exclusive() as snap:
        if snap is None:
            logger.info("load leftovers kept for gc: a pull is in progress")
            return
        manifests = {entry.manifest_digest for entry in snap.entries}
        kept_layers, kept_blobs = referenced(store, set(snap.by_id), manifests)
        for diff_id in layers - kept_layers:
            store.layers.remove(diff_id)
        for digest in blobs - kept_blobs:
            store.blobs.remove(digest)
            store.layers.forget_blob(digest)


def _clear_leftovers(store: ImageStore) -> list[str]:
    """Everything in tmp/, lock files, and temporary files of interrupted atomic writes."""
    removed: list[str] = []
    for name in _listdir(store.blobs.tmp_dir):
        remove_tree(os.path.join(store.blobs.tmp_dir, name))
        removed.append(name)
    for name in _listdir(store.layers.locks_dir):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(store.layers.locks_dir, name))
    for directory in (
        store.images_dir,
        store.layers.records_dir,
        store.layers.by_blob_dir,
        store.blobs.dir,
    ):
        for name in _listdir(directory):
            if TMP_MARK in name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
                removed.append(name)
    return removed


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
