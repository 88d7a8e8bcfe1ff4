"""Registry credentials: the engine's own ``auth.json`` (written by ``login``, mode 0600) and,
read only, a Docker-style ``config.json``; both in Docker's format
``{"auths": {"HOST": {"auth": base64("user:password")}}}``.

Nothing here logs a password or a token, and ``Credentials`` keeps its password out of
``repr``. Credential helpers (``credsStore``, ``credHelpers``) and identity tokens are not
supported: such entries are skipped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

AUTH_FILE = "auth.json"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io")
_MAX_FILE = 1 << 20


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def encoded(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def registry_key(server: str) -> str:
    """The registry a config.json key names: scheme and path dropped, Docker Hub's many
    names folded into ``docker.io``."""
    host = server.strip()
    for scheme in ("https://", "http://"):
        host = host.removeprefix(scheme)
    host = host.partition("/")[0].lower()
    return "docker.io" if host in _HUB_ALIASES else host


def _file_key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry == "docker.io" else registry


class AuthStore:
    """Credentials by registry name (``docker.io``, ``host:port``). ``path`` is written by
    ``save``/``remove``; ``docker_config`` (a config.json path) is only read."""

    def __init__(self, path: str, *, docker_config: str | None = None) -> None:
        self.path = path
        self.docker_config = docker_config

    def __repr__(self) -> str:
        return f"AuthStore({self.path!r}, docker_config={self.docker_config!r})"

    def get(self, registry: str) -> Credentials | None:
        key = registry_key(registry)
        for path in (self.path, self.docker_config):
            if path is None:
                continue
            found = _lookup(_read_auths(path), key, path)
            if found is not None:
                return found
        return None

    def save(self, registry: str, credentials: Credentials) -> None:
        document = _read_document(self.path)
        auths = document.setdefault("auths", {})
        key = registry_key(registry)
        for existing in [k for k in auths if registry_key(k) == key]:
            del auths[existing]
        auths[_file_key(key)] = {"auth": credentials.encoded()}
        _write_private(self.path, document)
        logger.info("saved credentials for %s in %s", key, self.path)

    def remove(self, registry: str) -> bool:
        """Forget ``registry``'s credentials; False if there were none (which is fine)."""
        document = _read_document(self.path)
        auths = document.get("auths", {})
        key = registry_key(registry)
        found = [k for k in auths if registry_key(k) == key]
        for existing in found:
            del auths[existing]
        if found:
            _write_private(self.path, document)
            logger.info("removed credentials for %s from %s", key, self.path)
        return bool(found)


def _lookup(auths: dict[str, Any], key: str, path: str) -> Credentials | None:
    for server, entry in auths.items():
        if registry_key(server) != key or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            return _decode(entry["auth"], path, key)
        username, password = entry.get("username"), entry.get("password")
        if isinstance(username, str) and isinstance(password, str) and username:
            return Credentials(username, password)
    return None


def _decode(value: str, path: str, key: str) -> Credentials:
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidArgument(path, f"the auth entry for {key} is not base64") from exc
    username, colon, password = text.partition(":")
    if not colon or not username:
        raise InvalidArgument(path, f"the auth entry for {key} is not user:password")
    return Credentials(username, password)


def _read_auths(path: str) -> dict[str, Any]:
    auths = _read_document(path).get("auths", {})
    if not isinstance(auths, dict):
        raise InvalidArgument(path, "auths is not an object")
    return auths


def _read_document(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidArgument(path, f"cannot read credentials: {exc.strerror}") from exc
    if len(data) > _MAX_FILE:
        raise InvalidArgument(path, "credentials file is too big")
    try:
        document = json.loads(data) if data.strip() else {}
    except ValueError as exc:
        raise InvalidArgument(path, "credentials file is not valid JSON") from exc
    if not isinstance(document, dict):
        raise InvalidArgument(path, "credentials file is not a JSON object")
    return document


def _write_private(path: str, document: dict[str, Any]) -> None:
    """Replace ``path`` atomically with a file only its owner can read."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
