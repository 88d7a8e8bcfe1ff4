"""Docker-style image references: parsing, validation and normalisation.

The grammar is distribution/reference's::

    reference      := name [ ":" tag ] [ "@" digest ]
    name           := [domain "/"] path-component ["/" path-component]*
    domain         := host [":" port]            host: DNS labels or "[" IPv6 "]"
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest         := algorithm ":" hex

and so is normalisation: the first component is a domain only if it contains "." or ":",
is "localhost", or has an uppercase letter; otherwise the domain is ``docker.io``, whose
single-component names live under ``library/``; a name without tag or digest gets ``latest``.
Each failure says what is wrong instead of distribution's single "invalid reference format".
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

from runtime.errors import InvalidDigest, InvalidReference
from runtime.image.digest import check_digest

logger = logging.getLogger(__name__)

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255
TAG_MAX = 128

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository name as people write it: ``busybox``, ``user/app``, ``host/x``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_PREFIX)

    @property
    def familiar(self) -> str:
        """The short form, e.g. ``busybox:latest`` (Docker's ``FamiliarString``)."""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``text``; ``InvalidReference`` says what is wrong with it.

    With ``default_tag`` (the default), a reference without tag or digest gets ``latest``.
    Results are cached: every container start resolves its image name.
    """
    return _parse(text, default_tag)


@functools.lru_cache(maxsize=1024)
def _parse(text: str, default_tag: bool) -> Reference:
    if not text:
        raise InvalidReference(text, "empty reference")
    if _IDENTIFIER.fullmatch(text):
        raise InvalidReference(text, "cannot use a 64-character hex string as a repository name")
    if any(ch.isspace() for ch in text):
        raise InvalidReference(text, "contains whitespace")
    rest, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    name, tag = _split_tag(rest)
    if digest is not None:
        _check_digest(text, digest)
    if tag is not None:
        _check_tag(text, tag)
    domain, path = _split_domain(text, name)
    _check_domain(text, domain)
    _check_path(text, path)
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidReference(text, f"repository name is longer than {NAME_MAX} characters")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def is_reference(text: str) -> bool:
    try:
        parse_reference(text)
    except InvalidReference:
        return False
    return True


def _split_tag(text: str) -> tuple[str, str | None]:
    """``name[:tag]``: a ':' after the last '/' starts the tag (before it, it is a port)."""
    colon = text.rfind(":")
    if colon > text.rfind("/"):
        return text[:colon], text[colon + 1 :]
    return text, None


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, slash, remainder = name.partition("/")
    if not slash or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, remainder
    if path != path.lower():
        raise InvalidReference(text, f"repository name {path!r} must be lowercase")
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path and path:
        path = OFFICIAL_PREFIX + path
    return domain, path


def _check_domain(text: str, domain: str) -> None:
    if not domain:
        raise InvalidReference(text, "empty registry domain")
    if not _DOMAIN.fullmatch(domain):
        raise InvalidReference(text, f"invalid registry domain {domain!r}")


def _check_path(text: str, path: str) -> None:
    if not path:
        raise InvalidReference(text, "repository name must have at least one component")
    for component in path.split("/"):
        if not component:
            raise InvalidReference(text, "repository name has an empty path component")
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReference(
                text,
                f"invalid path component {component!r}: use lowercase letters and digits, "
                "separated by '.', '_', '__' or dashes",
            )


def _check_tag(text: str, tag: str) -> None:
    if not tag:
        raise InvalidReference(text, "empty tag")
    if len(tag) > TAG_MAX:
        raise InvalidReference(text, f"tag is longer than {TAG_MAX} characters")
    if not _TAG.fullmatch(tag):
        raise InvalidReference(
            text, f"invalid tag {tag!r}: use letters, digits, '_', '.' and '-', not first"
        )


def _check_digest(text: str, digest: str) -> None:
    if not digest:
        raise InvalidReference(text, "empty digest")
    if not _DIGEST_SHAPE.fullmatch(digest):
        raise InvalidReference(text, f"invalid digest {digest!r}: expected <algorithm>:<hex>")
    try:
        check_digest(digest)
    except InvalidDigest as exc:
        raise InvalidReference(text, f"invalid digest: {exc.reason}") from exc
