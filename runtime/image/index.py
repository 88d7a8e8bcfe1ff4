"""``index.json``: the store's list of images and tags, an OCI image index (so the images
directory is itself a valid OCI image layout), and lookups and edits on it.

One entry per (manifest, tag), and one without a tag for an untagged image. Each entry
carries the full reference in ``org.opencontainers.image.ref.name`` and the image id (the
config digest) in ``io.playground.image.id``, so resolving a name or an id never opens a
manifest. Readers take no lock: the file is replaced atomically, and its parsed form is kept
in memory until its inode, mtime or size change. Writers serialise on ``index.lock``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from runtime.errors import (
    ImageConflict,
    ImageInUse,
    ImageNotFound,
    InvalidDigest,
    InvalidImage,
    InvalidReference,
)
from runtime.image.digest import check_digest
from runtime.image.locks import flocked, write_atomic
from runtime.image.manifest import OCI_INDEX, OCI_MANIFEST
from runtime.image.reference import parse_reference

logger = logging.getLogger(__name__)

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_ID = "io.playground.image.id"
_SHORT_ID = re.compile(r"[0-9a-f]{4,64}")
_FULL_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    image_id: str
    manifest_digest: str
    manifest_size: int
    media_type: str = OCI_MANIFEST
    ref: str | None = None  # canonical reference, e.g. docker.io/library/busybox:latest

    def to_json(self) -> dict[str, Any]:
        annotations = {IMAGE_ID: self.image_id}
        if self.ref is not None:
            annotations[REF_NAME] = self.ref
        return {
            "mediaType": self.media_type,
            "digest": self.manifest_digest,
            "size": self.manifest_size,
            "annotations": annotations,
        }


@dataclass(frozen=True)
class Snapshot:
    """The parsed index: entries, and the lookups derived from them."""

    entries: tuple[Entry, ...]
    by_ref: dict[str, str]  # canonical reference -> image id
    by_id: dict[str, Entry]  # image id -> an entry (its manifest)
    refs_of: dict[str, list[str]]  # image id -> canonical references, in index order


def snapshot(entries: tuple[Entry, ...]) -> Snapshot:
    by_ref: dict[str, str] = {}
    by_id: dict[str, Entry] = {}
    refs_of: dict[str, list[str]] = {}
    for entry in entries:
        by_id.setdefault(entry.image_id, entry)
        refs_of.setdefault(entry.image_id, [])
        if entry.ref is not None:
            by_ref[entry.ref] = entry.image_id
            refs_of[entry.image_id].append(entry.ref)
    return Snapshot(entries, by_ref, by_id, refs_of)


class IndexFile:
    def __init__(self, images_dir: str) -> None:
        self.path = os.path.join(images_dir, "index.json")
        self.lock_path = os.path.join(images_dir, "index.lock")
        # One attribute, replaced whole: a reader in another thread never pairs a new key
        # with an old snapshot.
        self._state: tuple[tuple[int, int, int] | None, Snapshot] = (None, snapshot(()))

    def read(self) -> Snapshot:
        """The current index; one ``stat`` when nothing changed since the last call."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._state = (None, snapshot(()))
            return self._state[1]
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        state = self._state
        if key != state[0]:
            with open(self.path, "rb") as f:
                state = (key, snapshot(_parse(f.read(), self.path)))
            self._state = state
        return state[1]

    @contextlib.contextmanager
    def update(self) -> Iterator[list[Entry]]:
        """Lock, yield the entries as a list to change in place, then write them back."""
        with flocked(self.lock_path):
            before = self.read().entries
            entries = list(before)
            yield entries
            if tuple(entries) != before:
                self._write(tuple(entries))

    @contextlib.contextmanager
    def locked(self) -> Iterator[Snapshot]:
        """Hold the write lock while reading (for a consistent view across steps)."""
        with flocked(self.lock_path):
            yield self.read()

    def _write(self, entries: tuple[Entry, ...]) -> None:
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [entry.to_json() for entry in entries],
        }
        write_atomic(self.path, json.dumps(document, indent=2).encode() + b"\n")
        st = os.stat(self.path)
        self._state = ((st.st_ino, st.st_mtime_ns, st.st_size), snapshot(entries))


def _parse(data: bytes, path: str) -> tuple[Entry, ...]:
    try:
        document = json.loads(data)
        manifests = document["manifests"]
        return tuple(_entry(item) for item in manifests)
    except (ValueError, KeyError, TypeError, InvalidDigest) as exc:
        raise InvalidImage(path, f"corrupt image index: {exc}") from exc


def _entry(item: dict[str, Any]) -> Entry:
    annotations = item.get("annotations") or {}
    ref = annotations.get(REF_NAME)
    return Entry(
        image_id=check_digest(annotations[IMAGE_ID], sha256_only=True),
        manifest_digest=check_digest(item["digest"], sha256_only=True),
        manifest_size=int(item["size"]),
        media_type=str(item.get("mediaType", OCI_MANIFEST)),
        ref=str(ref) if ref is not None else None,
    )


def split(entries: list[Entry]) -> tuple[dict[str, Entry], dict[str, list[str]]]:
    """Entries as (image id -> its manifest entry without ref, image id -> references)."""
    manifests: dict[str, Entry] = {}
    refs: dict[str, list[str]] = {}
    for entry in entries:
        manifests.setdefault(entry.image_id, replace(entry, ref=None))
        refs.setdefault(entry.image_id, [])
        if entry.ref is not None and entry.ref not in refs[entry.image_id]:
            refs[entry.image_id].append(entry.ref)
    return manifests, refs


def join(manifests: dict[str, Entry], refs: dict[str, list[str]]) -> list[Entry]:
    """The inverse of ``split``: one entry per reference, or one untagged entry."""
    entries: list[Entry] = []
    for image_id, entry in manifests.items():
        names: list[str | None] = [*refs.get(image_id, [])] or [None]
        entries.extend(replace(entry, ref=name) for name in names)
    return entries


def move_ref(refs: dict[str, list[str]], ref: str, image_id: str) -> None:
    """Point ``ref`` at ``image_id``, taking it from whichever image had it."""
    if ref in refs.get(image_id, ()):
        return
    for names in refs.values():
        if ref in names:
            names.remove(ref)
    refs.setdefault(image_id, []).append(ref)


def find(snap: Snapshot, text: str) -> tuple[str, str | None]:
    """(image id, the tag it was found by or None) for a tag (in any spelling), a digest
    reference, an id, or a unique id prefix of 4+ hex digits."""
    if text.startswith("sha256:"):
        return _by_prefix(snap, text[len("sha256:") :], text), None
    if _FULL_ID.fullmatch(text):
        return _by_prefix(snap, text, text), None
    try:
        ref = parse_reference(text)
    except InvalidReference:
        if _SHORT_ID.fullmatch(text):
            return _by_prefix(snap, text, text), None
        raise
    canonical = str(ref)
    if ref.digest is not None:
        for entry in snap.entries:
            if ref.digest in (entry.manifest_digest, entry.image_id):
                return entry.image_id, None
    elif canonical in snap.by_ref:
        return snap.by_ref[canonical], canonical
    if _SHORT_ID.fullmatch(text):
        return _by_prefix(snap, text, text), None
    raise ImageNotFound(text)


def _by_prefix(snap: Snapshot, prefix: str, text: str) -> str:
    if not _SHORT_ID.fullmatch(prefix):
        raise ImageNotFound(text)
    matches = [i for i in snap.by_id if i.startswith("sha256:" + prefix)]
    if len(matches) != 1:
        if matches:
            logger.info("image id prefix %s is ambiguous: %s", prefix, matches)
        raise ImageNotFound(text)
    return matches[0]


def untag_for_remove(
    text: str,
    image_id: str,
    matched: str | None,
    names: dict[str, list[str]],
    force: bool,
    user: str | None,
) -> list[str]:
    """``rmi``'s untagging (Docker's rules): removes from ``names[image_id]`` the tags to
    go and returns the ``Untagged:`` lines; refuses when force is needed."""
    refs = names[image_id]
    if matched is not None:
        # By tag: only that tag goes, unless it is the last one (Docker refuses to leave
        # an image in use dangling without force).
        if user is not None and not force and len(refs) == 1:
            raise ImageInUse(text, user)
        untag = [matched]
    else:
        repositories = {parse_reference(ref).name for ref in refs}
        if len(repositories) > 1 and not force:
            raise ImageConflict(text, "image is referenced in multiple repositories")
        untag = list(refs)
    if user is not None and not force and len(untag) == len(refs):
        raise ImageInUse(text, user)
    for ref in untag:
        refs.remove(ref)
    return [f"Untagged: {parse_reference(ref).familiar}" for ref in untag]
