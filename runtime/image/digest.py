"""Content digests (``sha256:<hex>``): validation, hashing and canonical JSON.

Every digest that reaches a file path goes through ``check_digest`` first, so a hostile
manifest cannot name ``sha256:../../etc/passwd``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from runtime.errors import InvalidDigest

logger = logging.getLogger(__name__)

# Algorithms the store accepts, with their hex length (go-digest's registered set).
_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")


def check_digest(digest: str, *, sha256_only: bool = False) -> str:
    """``digest`` itself if it is ``<algorithm>:<lowercase hex>`` of the right length."""
    algorithm, sep, hex_part = digest.partition(":")
    if not sep:
        raise InvalidDigest(digest, "expected <algorithm>:<hex>")
    length = _ALGORITHMS.get(algorithm)
    if length is None or (sha256_only and algorithm != "sha256"):
        raise InvalidDigest(digest, f"unsupported algorithm {algorithm!r}")
    if len(hex_part) != length or not _HEX.fullmatch(hex_part):
        raise InvalidDigest(digest, f"expected {length} lowercase hex digits")
    return digest


def hex_of(digest: str) -> str:
    """The hex part of a sha256 digest, validated (safe to use as a file name)."""
    return check_digest(digest, sha256_only=True)[len("sha256:") :]


def new_hasher(digest: str) -> hashlib._Hash:
    """A hash object for ``digest``'s algorithm."""
    return hashlib.new(check_digest(digest).partition(":")[0])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """The bytes we store for a JSON document we write ourselves: sorted, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
