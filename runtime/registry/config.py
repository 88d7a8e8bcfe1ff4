"""Which endpoints serve a registry, and how to reach them: mirrors, insecure (plain HTTP)
registries, extra CA certificates, timeouts, retries and parallelism.

``RegistryConfig`` is frozen and built by the caller (the CLI loads ``<root>/registries.json``
with ``load_config``); nothing here reads the environment. As in Docker, registries on
loopback (127.0.0.0/8, ::1, localhost) are insecure unless the configuration says otherwise,
and ``docker.io`` is served by ``registry-1.docker.io``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
CONFIG_NAME = "registries.json"
_TUNABLES = (
    "connect_timeout",
    "read_timeout",
    "retries",
    "backoff",
    "max_backoff",
    "max_concurrent_downloads",
    "max_concurrent_uploads",
    "upload_chunk_size",
)


@dataclass(frozen=True)
class RegistryHost:
    """Settings for one registry, named as in references (``docker.io``, ``host:port``)."""

    name: str
    mirrors: tuple[str, ...] = ()
    insecure: bool | None = None  # None: insecure only on loopback
    ca_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """One base URL to try for a registry; ``verify`` is False only for insecure ones."""

    registry: str
    url: str
    verify: bool
    ca_files: tuple[str, ...] = ()
    mirror: bool = False
    fallback_url: str | None = None  # plain HTTP, tried when TLS to an insecure host fails


@dataclass(frozen=True)
class RegistryConfig:
    hosts: tuple[RegistryHost, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # the longest pause allowed between two reads of a body
    retries: int = 4
    backoff: float = 0.5  # first pause between attempts; doubles each time
    max_backoff: float = 8.0
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 3
    upload_chunk_size: int = 16 << 20  # bigger blobs are uploaded in PATCH chunks

    def host(self, name: str) -> RegistryHost:
        for host in self.hosts:
            if host.name == name:
                return host
        return RegistryHost(name)

    def is_insecure(self, name: str) -> bool:
        setting = self.host(name).insecure
        return is_loopback(name) if setting is None else setting

    def with_host(self, host: RegistryHost) -> RegistryConfig:
        others = tuple(h for h in self.hosts if h.name != host.name)
        return replace(self, hosts=(*others, host))

    def endpoints(self, registry: str, *, mirrors: bool = True) -> list[Endpoint]:
        """Mirrors first (pulls only), then the registry itself."""
        host = self.host(registry)
        found = [self._mirror(registry, url) for url in host.mirrors] if mirrors else []
        netloc = DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry
        insecure = self.is_insecure(registry)
        found.append(
            Endpoint(
                registry,
                f"https://{netloc}",
                verify=not insecure,
                ca_files=host.ca_files,
                fallback_url=f"http://{netloc}" if insecure else None,
            )
        )
        return found

    def _mirror(self, registry: str, url: str) -> Endpoint:
        parts = urlsplit(url)
        mirror = self.host(parts.netloc)
        insecure = parts.scheme == "http" or self.is_insecure(parts.netloc)
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return Endpoint(registry, base, not insecure, mirror.ca_files, mirror=True)


def is_loopback(netloc: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1, with or without a port."""
    host = netloc
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def ssl_context(ca_files: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The system's trust store plus ``ca_files``; built once per set (loading is slow)."""
    context = ssl.create_default_context()
    for path in ca_files:
        try:
            context.load_verify_locations(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"CA certificate {path}", str(exc)) from exc
    return context


def load_config(path: str) -> RegistryConfig:
    """``registries.json``; a missing file is the default configuration.

    Format: ``{"registries": {"NAME": {"mirrors": [URL...], "insecure": BOOL, "ca_files":
    [PATH...]}}, "read_timeout": SECONDS, ...}``.
    """
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return RegistryConfig()
    except (OSError, ValueError) as exc:
        raise InvalidArgument(path, f"cannot read registries config: {exc}") from exc
    return config_from_dict(data, source=path)


def config_from_dict(data: Any, *, source: str = "registries config") -> RegistryConfig:
    if not isinstance(data, dict):
        raise InvalidArgument(source, "expected a JSON object")
    unknown = set(data) - {"registries", *_TUNABLES}
    if unknown:
        raise InvalidArgument(source, f"unknown keys: {', '.join(sorted(unknown))}")
    tunables: dict[str, Any] = {}
    for key in _TUNABLES:
        if key in data:
            value = data[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"{source}: {key}", "expected a non-negative number")
            tunables[key] = value
    registries = data.get("registries", {})
    if not isinstance(registries, dict):
        raise InvalidArgument(f"{source}: registries", "expected an object")
    hosts = tuple(_host_from_dict(name, value, source) for name, value in registries.items())
    return RegistryConfig(hosts=hosts, **tunables)


def _host_from_dict(name: str, value: Any, source: str) -> RegistryHost:
    where = f"{source}: registries.{name}"
    if not isinstance(value, dict) or set(value) - {"mirrors", "insecure", "ca_files"}:
        raise InvalidArgument(where, "expected an object with mirrors, insecure, ca_files")
    mirrors = value.get("mirrors", [])
    ca_files = value.get("ca_files", [])
    insecure = value.get("insecure")
    for listed in (mirrors, ca_files):
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise InvalidArgument(where, "mirrors and ca_files must be lists of strings")
    for url in mirrors:
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise InvalidArgument(where, f"mirror {url!r} is not an http(s) URL")
    if insecure is not None and not isinstance(insecure, bool):
        raise InvalidArgument(where, "insecure must be true or false")
    return RegistryHost(name, tuple(mirrors), insecure, tuple(ca_files))
