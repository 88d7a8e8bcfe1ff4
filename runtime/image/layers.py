"""Unpacked layers: ``layers/<diff_id hex>/``, each an overlayfs lower directory holding
nothing but the layer's files, and their records in ``layerdb/``:
``layerdb/sha256/<diff_id hex>.json`` (sizes) and ``layerdb/blobs/<blob hex>`` (the diff_id
a blob unpacks to).

A blob is unpacked once: a per-blob ``flock`` makes concurrent callers wait for the first,
the layer is built under ``tmp/`` and renamed in, and its record is written before the
rename, so every layer directory has a record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
from dataclasses import dataclass

from runtime.errors import BlobNotFound, DigestMismatch
from runtime.image.digest import canonical_json, check_digest, hex_of
from runtime.image.layerfs import remove_tree
from runtime.image.locks import flocked, write_atomic
from runtime.image.unpack import Budgets, UnpackResult, unpack_layer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str
    path: str
    size: int  # bytes of file content in the layer


class LayerStore:
    def __init__(self, images_dir: str, budgets: Budgets) -> None:
        self.dir = os.path.join(images_dir, "layers")
        self.records_dir = os.path.join(images_dir, "layerdb", "sha256")
        self.by_blob_dir = os.path.join(images_dir, "layerdb", "blobs")
        self.locks_dir = os.path.join(images_dir, "locks")
        self.tmp_dir = os.path.join(images_dir, "tmp")
        self.budgets = budgets
        self._sizes: dict[str, int] = {}

    def path(self, diff_id: str) -> str:
        return os.path.join(self.dir, hex_of(diff_id))

    def get(self, diff_id: str) -> LayerInfo | None:
        """The layer if it is unpacked (its directory and record both exist)."""
        path = self.path(diff_id)
        if not os.path.isdir(path):
            return None
        size = self.size(diff_id)
        return None if size < 0 else LayerInfo(diff_id, path, size)

    def size(self, diff_id: str) -> int:
        """Content bytes from the layer's record (cached: records never change); -1 if none."""
        size = self._sizes.get(diff_id)
        if size is None:
            try:
                with open(self._record(diff_id), "rb") as f:
                    size = int(json.load(f)["content_size"])
            except (OSError, ValueError, KeyError, TypeError):
                return -1
            self._sizes[diff_id] = size
        return size

    def for_blob(self, blob_digest: str) -> LayerInfo | None:
        try:
            with open(os.path.join(self.by_blob_dir, hex_of(blob_digest))) as f:
                diff_id = check_digest(f.read().strip(), sha256_only=True)
        except (OSError, ValueError):
            return None
        return self.get(diff_id)

    def ensure(self, blob_digest: str, blob_path: str, expected_diff_id: str | None) -> LayerInfo:
        """The layer of blob ``blob_digest``, unpacked from ``blob_path`` if not done yet."""
        info = self.for_blob(blob_digest)
        if info is None:
            lock = os.path.join(self.locks_dir, hex_of(blob_digest) + ".lock")
            with flocked(lock):
                info = self.for_blob(blob_digest) or self._unpack(
                    blob_digest, blob_path, expected_diff_id
                )
        _check_diff_id(info.diff_id, expected_diff_id, blob_digest)
        return info

    def remove(self, diff_id: str) -> None:
        """Remove the layer and its record; already gone is fine. The directory is renamed
        away first, so it disappears at once even if deleting its files takes a while."""
        trash = os.path.join(self.tmp_dir, f"rm-{secrets.token_hex(8)}")
        try:
            os.rename(self.path(diff_id), trash)
        except FileNotFoundError:
            pass
        else:
            remove_tree(trash)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._record(diff_id))
        self._sizes.pop(diff_id, None)

    def blob_map(self) -> dict[str, str]:
        """blob digest -> diff_id, for every blob unpacked so far."""
        mapping: dict[str, str] = {}
        for name in _listdir(self.by_blob_dir):
            with contextlib.suppress(OSError), open(os.path.join(self.by_blob_dir, name)) as f:
                mapping["sha256:" + name] = f.read().strip()
        return mapping

    def forget_blob(self, blob_digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.by_blob_dir, hex_of(blob_digest)))

    def diff_ids(self) -> set[str]:
        """Every layer with a directory or a record."""
        names = set(_listdir(self.dir))
        names |= {
            n.removesuffix(".json") for n in _listdir(self.records_dir) if n.endswith(".json")
        }
        return {"sha256:" + n for n in names if len(n) == 64}

    def _unpack(self, blob_digest: str, blob_path: str, expected_diff_id: str | None) -> LayerInfo:
        if not os.path.exists(blob_path):
            raise BlobNotFound(blob_digest)
        staging = os.path.join(self.tmp_dir, f"layer-{secrets.token_hex(8)}")
        try:
            result = unpack_layer(
                blob_path, staging, expected_digest=blob_digest, budgets=self.budgets
            )
            # A layer that is not what the image config says is not kept at all.
            _check_diff_id(result.diff_id, expected_diff_id, blob_digest)
            info = self._install(staging, result)
        finally:
            remove_tree(staging)  # gone already if it was installed
        write_atomic(os.path.join(self.by_blob_dir, hex_of(blob_digest)), result.diff_id.encode())
        return info

    def _install(self, staging: str, result: UnpackResult) -> LayerInfo:
        record = {
            "diff_id": result.diff_id,
            "size": result.size,
            "content_size": result.content_size,
            "entries": result.entries,
        }
        write_atomic(self._record(result.diff_id), canonical_json(record))
        target = self.path(result.diff_id)
        try:
            os.rename(staging, target)
        except OSError as exc:
            # The same diff_id from another blob (other compression) got there first.
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        self._sizes[result.diff_id] = result.content_size
        logger.info("layer %s ready at %s", result.diff_id, target)
        return LayerInfo(result.diff_id, target, result.content_size)

    def _record(self, diff_id: str) -> str:
        return os.path.join(self.records_dir, hex_of(diff_id) + ".json")


def _check_diff_id(actual: str, expected: str | None, blob_digest: str) -> None:
    if expected is not None and actual != expected:
        raise DigestMismatch(expected, actual, f"layer {blob_digest} diff_id")


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
