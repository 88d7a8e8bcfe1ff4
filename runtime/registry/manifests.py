"""Manifests as registries serve them: fetching with digest verification, telling image
manifests from indexes (Docker manifest lists, OCI indexes), and picking the entry of an
index for a platform. Docker's schema 1 manifests are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform as host
from dataclasses import dataclass
from typing import Any

from runtime.errors import (
    DigestMismatch,
    InvalidArgument,
    InvalidDigest,
    InvalidImage,
    NoMatchingPlatform,
)
from runtime.image.digest import check_digest, new_hasher
from runtime.image.manifest import INDEX_TYPES, MANIFEST_TYPES, Descriptor, parse_descriptor
from runtime.registry.session import Repository
from runtime.registry.transport import read_bounded

logger = logging.getLogger(__name__)

SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
ACCEPT = ", ".join([*sorted(INDEX_TYPES), *sorted(MANIFEST_TYPES), *sorted(SCHEMA1_TYPES)])
MAX_MANIFEST = 4 << 20  # containerd's limit
_ARCHITECTURES = {
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def normalized(self) -> Platform:
        """containerd's normalisation: arm64 is v8 unless said otherwise, arm is v7."""
        arch, variant = self.architecture.lower(), self.variant.lower()
        arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64"}.get(arch, arch)
        if arch == "arm64" and not variant:
            variant = "v8"
        elif arch == "arm" and not variant:
            variant = "v7"
        elif arch == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os.lower(), arch, variant)


def parse_platform(text: str) -> Platform:
    """``OS/ARCH[/VARIANT]``, e.g. ``linux/arm64`` or ``linux/arm/v7``."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument("--platform", f"{text!r}: expected OS/ARCH[/VARIANT]")
    return Platform(*parts).normalized()


def host_platform() -> Platform:
    arch, variant = _ARCHITECTURES.get(host.machine(), (host.machine(), ""))
    return Platform("linux", arch, variant).normalized()


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as served: ``digest`` is the sha256 of ``data``."""

    data: bytes
    digest: str
    media_type: str
    document: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


async def fetch_manifest(repo: Repository, reference: str, *, what: str) -> Manifest:
    """GET a manifest by tag or digest; a digest (the reference's or the registry's
    ``Docker-Content-Digest``) must match the bytes received."""
    response = await repo.send(
        "GET", f"manifests/{reference}", headers={"Accept": ACCEPT}, what=f"manifest for {what}"
    )
    content_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
    served_digest = response.headers.get("Docker-Content-Digest")
    data = await read_bounded(response, MAX_MANIFEST, f"manifest for {what}")
    if ":" in reference:  # a digest: tags have no ':'
        _verify(data, reference, what)
    elif served_digest and _is_digest(served_digest):
        _verify(data, served_digest, what)
    return parse_served(data, content_type, what)


def parse_served(data: bytes, content_type: str, what: str) -> Manifest:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise InvalidImage(what, "manifest is not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidImage(what, "manifest is not a JSON object")
    media_type = _media_type(document, content_type, what)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Manifest(data, digest, media_type, document)


def _media_type(document: dict[str, Any], content_type: str, what: str) -> str:
    declared = document.get("mediaType")
    if document.get("schemaVersion") == 1 or content_type in SCHEMA1_TYPES:
        raise InvalidImage(
            what,
            "Docker image manifest schema 1 is deprecated and not supported; "
            "push the image again with a current client",
        )
    if isinstance(declared, str) and declared:
        media_type = declared
    elif content_type in MANIFEST_TYPES | INDEX_TYPES:
        media_type = content_type
    else:
        media_type = "application/vnd.oci.image.index.v1+json" if "manifests" in document else ""
        media_type = media_type or "application/vnd.oci.image.manifest.v1+json"
    if media_type not in MANIFEST_TYPES | INDEX_TYPES:
        raise InvalidImage(what, f"unsupported manifest media type {media_type!r}")
    return media_type


def _is_digest(text: str) -> bool:
    try:
        check_digest(text)
    except InvalidDigest:
        return False
    return True


def _verify(data: bytes, digest: str, what: str) -> None:
    hasher = new_hasher(digest)
    hasher.update(data)
    actual = f"{hasher.name}:{hasher.hexdigest()}"
    if actual != digest:
        raise DigestMismatch(digest, actual, f"manifest for {what}")


def select_platform(index: Manifest, wanted: Platform, what: str) -> Descriptor:
    """The index entry for ``wanted``: same OS and architecture, and the same variant
    when ``wanted`` has one (an exact variant is preferred)."""
    entries = index.document.get("manifests")
    if not isinstance(entries, list):
        raise InvalidImage(what, "index has no manifests list")
    candidates: list[tuple[Platform, Descriptor]] = []
    for entry in entries:
        descriptor = parse_descriptor(entry, what)
        found = entry.get("platform") if isinstance(entry, dict) else None
        if descriptor.media_type not in MANIFEST_TYPES or not isinstance(found, dict):
            continue
        candidates.append((_entry_platform(found), descriptor))
    for exact in (True, False):
        for candidate, descriptor in candidates:
            if candidate.os != wanted.os or candidate.architecture != wanted.architecture:
                continue
            if candidate.variant == wanted.variant or (not exact and not wanted.variant):
                return descriptor
    available = [str(candidate) for candidate, _ in candidates]
    raise NoMatchingPlatform(what, str(wanted), available)


def _entry_platform(found: dict[str, Any]) -> Platform:
    values = [found.get(key, "") for key in ("os", "architecture", "variant")]
    return Platform(*(v if isinstance(v, str) else "" for v in values)).normalized()
