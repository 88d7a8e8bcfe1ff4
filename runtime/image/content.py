"""Which stored content is still referenced, and deleting what is not: ``gc`` and the
content half of ``remove``. Callers hold the index lock and the exclusive lease, so no image
is being added and no pull is writing while this runs."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runtime.errors import ContainerRuntimeError
from runtime.image.digest import check_digest
from runtime.image.index import Snapshot
from runtime.image.layerfs import remove_tree
from runtime.image.locks import TMP_MARK, write_atomic
from runtime.image.manifest import parse_diff_ids, parse_manifest

if TYPE_CHECKING:
    from runtime.image.store import ImageStore

logger = logging.getLogger(__name__)

ORPHANS = "orphans.json"


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
    store: ImageStore, image_ids: set[str], manifests: set[str], keep: set[str] | None
) -> GcReport:
    """``gc``: ``keep`` is every image id containers use (None: unknown, so every image
    recorded as removed-while-in-use is kept)."""
    recorded = orphans(store)
    live = recorded if keep is None else recorded & keep
    set_orphans(store, live)
    extra = (live | (keep or set())) - image_ids
    layers, blobs = referenced(store, image_ids, manifests, extra)
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


def free(
    store: ImageStore,
    remaining: Snapshot,
    image_id: str,
    manifest_digest: str,
    in_use: Callable[[str], str | None],
) -> list[str]:
    """Delete what the removed image used and neither ``remaining`` images nor images
    removed earlier while in use (and still in use) do; Docker's ``Deleted:`` lines."""
    live = {orphan for orphan in orphans(store) if in_use(orphan) is not None}
    set_orphans(store, live)
    ids = set(remaining.by_id)
    manifests = {entry.manifest_digest for entry in remaining.entries}
    layers, blobs = referenced(store, ids, manifests, live - ids)
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


def orphans(store: ImageStore) -> set[str]:
    """Images removed (with force) while containers used them: their content stays."""
    try:
        with open(os.path.join(store.images_dir, ORPHANS), "rb") as f:
            ids = json.load(f)
    except (OSError, ValueError):
        return set()
    return {str(i) for i in ids} if isinstance(ids, list) else set()


def set_orphans(store: ImageStore, ids: set[str]) -> None:
    """Record ``ids`` as the orphans (callers hold the index lock)."""
    if ids != orphans(store):
        write_atomic(os.path.join(store.images_dir, ORPHANS), json.dumps(sorted(ids)).encode())


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
        ids = set(snap.by_id)
        kept_layers, kept_blobs = referenced(store, ids, manifests, orphans(store) - ids)
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
