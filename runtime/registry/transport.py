"""HTTP to registries: one pooled ``httpx.AsyncClient`` per origin, explicit timeouts,
bounded redirects and bodies, retries with exponential backoff, and registry errors turned
into ``RegistryError``.

Only HTTP/1.1 is spoken. The read timeout applies to every read of a body, so a transfer
that stalls fails after ``read_timeout`` seconds instead of hanging. Retries cover what may
succeed later: connection errors, timeouts, 429 and 5xx answers (``temporary=True``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from runtime.errors import RegistryError, RegistryUnreachable
from runtime.registry.config import RegistryConfig, ssl_context

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 << 10
_STATUS_CODES = {
    401: "UNAUTHORIZED",
    403: "DENIED",
    404: "NOT_FOUND",
    405: "UNSUPPORTED",
    429: "TOOMANYREQUESTS",
}
_T = TypeVar("_T")


def is_temporary_status(status: int) -> bool:
    return status == 429 or status >= 500


class Transport:
    """The HTTP clients of one session, by origin; closed together by ``aclose``."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self._clients: dict[tuple[str, bool, tuple[str, ...]], httpx.AsyncClient] = {}

    def client(
        self, url: str, *, verify: bool = True, ca_files: tuple[str, ...] = ()
    ) -> httpx.AsyncClient:
        parts = urlsplit(url)
        key = (f"{parts.scheme}://{parts.netloc}", verify, ca_files)
        client = self._clients.get(key)
        if client is None:
            client = httpx.AsyncClient(
                http1=True,
                http2=False,
                verify=_verify(parts.scheme, verify, ca_files),
                timeout=httpx.Timeout(
                    connect=self.config.connect_timeout,
                    read=self.config.read_timeout,
                    write=self.config.read_timeout,
                    pool=None,
                ),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
                max_redirects=MAX_REDIRECTS,
                trust_env=False,
                headers={"User-Agent": "playground/0.1"},
            )
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def retrying(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()`` until it succeeds, or fails for good, or the retries are spent."""
        for number in range(self.config.retries + 1):
            try:
                return await attempt()
            except RegistryError as exc:
                if not exc.temporary or number == self.config.retries:
                    raise
                delay = self.delay(number)
                logger.info("%s: %s; retrying in %.2fs", what, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def delay(self, number: int) -> float:
        base = min(self.config.backoff * (2.0**number), self.config.max_backoff)
        return float(base * random.uniform(0.8, 1.2))

    async def send(
        self, client: httpx.AsyncClient, request: httpx.Request, *, redirects: bool = True
    ) -> httpx.Response:
        """One attempt, response streamed (the caller closes it). A temporary status (429,
        5xx) or a connection failure is raised as a temporary ``RegistryError``."""
        try:
            response = await client.send(request, stream=True, follow_redirects=redirects)
        except httpx.TooManyRedirects as exc:
            raise RegistryUnreachable(
                _origin(request.url),
                "TOO_MANY_REDIRECTS",
                f"more than {MAX_REDIRECTS} redirects",
                temporary=False,
            ) from exc
        except httpx.HTTPError as exc:
            raise connection_error(request.url, exc) from exc
        if is_temporary_status(response.status_code):
            raise await error_for(response, f"{request.method} {request.url.path}")
        return response


def _verify(scheme: str, verify: bool, ca_files: tuple[str, ...]) -> ssl.SSLContext | bool:
    # A plain-HTTP origin is an insecure registry: whatever it answers, redirects included,
    # is only as trustworthy as its digests, so checking the certificate of an HTTPS place
    # it redirects to would protect nothing (and loading the trust store costs ~100 ms).
    if not verify or scheme != "https":
        return False
    return ssl_context(ca_files)


def _origin(url: httpx.URL | str) -> str:
    parsed = httpx.URL(str(url))
    return f"{parsed.scheme}://{parsed.netloc.decode()}"


def connection_error(url: httpx.URL | str, exc: BaseException) -> RegistryUnreachable:
    origin = _origin(url)
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        return RegistryUnreachable(origin, "TIMEOUT", f"{kind} timed out", temporary=True)
    if _is_tls_failure(exc):
        return RegistryUnreachable(origin, "TLS", _reason(exc), temporary=False)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return RegistryUnreachable(origin, "UNSUPPORTED", str(exc), temporary=False)
    return RegistryUnreachable(origin, "CONNECTION", _reason(exc), temporary=True)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "CERTIFICATE" in str(exc)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole body of a streamed response, refusing more than ``limit`` bytes."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await response.aclose()
        raise RegistryError(response.status_code, "TOO_LARGE", f"{what}: more than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise RegistryError(
                    response.status_code, "TOO_LARGE", f"{what}: more than {limit} bytes"
                )
    except httpx.HTTPError as exc:
        raise connection_error(response.request.url, exc) from exc
    finally:
        await response.aclose()
    return bytes(body)


async def error_for(response: httpx.Response, what: str) -> RegistryError:
    """The registry's own error (``{"errors": [{"code", "message"}]}``) or the status."""
    status = response.status_code
    try:
        body = await read_bounded(response, MAX_ERROR_BODY, what)
    except RegistryError:
        body = b""
    code, message = _STATUS_CODES.get(status, "UNKNOWN"), response.reason_phrase.lower()
    try:
        first = json.loads(body)["errors"][0]
        code = str(first.get("code") or code)
        message = str(first.get("message") or message)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    return RegistryError(status, code, f"{what}: {message}", temporary=is_temporary_status(status))
