"""A registry session: the HTTP clients, the endpoints' challenges and the cached tokens of
one or more pulls and pushes, and ``Repository``, which sends authorized requests to one
repository on one endpoint.

An endpoint is pinged (``GET /v2/``) once per session: that tells whether it answers over
HTTPS or, for an insecure registry only, plain HTTP, and which authentication it wants.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

import httpx

from runtime.errors import RegistryError
from runtime.registry.auth import AuthStore, Credentials
from runtime.registry.bearer import BAD_CREDENTIALS, Authorizer, pick_challenge
from runtime.registry.config import Endpoint, RegistryConfig
from runtime.registry.transport import Transport, error_for, read_bounded

logger = logging.getLogger(__name__)

_FALLBACK_CODES = ("TLS", "CONNECTION", "TIMEOUT")


class RegistrySession:
    """Use as ``async with RegistrySession(config, auth) as session``; share one across
    operations to reuse connections and tokens."""

    def __init__(self, config: RegistryConfig, auth: AuthStore | None = None) -> None:
        self.config = config
        self.transport = Transport(config)
        self.authorizer = Authorizer(self.transport, auth, config)
        self._bases: dict[Endpoint, str] = {}
        self._ping_locks: dict[Endpoint, asyncio.Lock] = {}

    async def __aenter__(self) -> RegistrySession:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.transport.aclose()

    def client(self, endpoint: Endpoint, base_url: str) -> httpx.AsyncClient:
        verify = endpoint.verify and base_url.startswith("https:")
        return self.transport.client(base_url, verify=verify, ca_files=endpoint.ca_files)

    async def base_url(self, endpoint: Endpoint) -> str:
        """The endpoint's working base URL, pinging it the first time."""
        base = self._bases.get(endpoint)
        if base is None:
            async with self._ping_locks.setdefault(endpoint, asyncio.Lock()):
                base = self._bases.get(endpoint)
                if base is None:
                    base = await self._ping(endpoint)
                    self._bases[endpoint] = base
        return base

    async def ping(self, endpoint: Endpoint, credentials: Credentials | None = None) -> None:
        """Check that ``credentials`` (or the stored ones) are accepted by the endpoint."""
        base = await self.base_url(endpoint)
        auth = await self.authorizer.header(base, auth_name(endpoint), (), credentials=credentials)
        if auth is None:
            return
        client = self.client(endpoint, base)

        async def attempt() -> None:
            request = client.build_request("GET", f"{base}/v2/", headers={"Authorization": auth})
            response = await self.transport.send(client, request)
            if response.status_code != 200:
                raise await _login_error(response)
            await read_bounded(response, 1 << 16, "ping")

        await self.transport.retrying("login", attempt)

    async def _ping(self, endpoint: Endpoint) -> str:
        candidates = [endpoint.url]
        if endpoint.fallback_url is not None:
            candidates.append(endpoint.fallback_url)
        for number, base in enumerate(candidates):
            last = number == len(candidates) - 1
            try:
                if last:
                    await self.transport.retrying("ping", _bind(self._ping_once, endpoint, base))
                else:
                    await self._ping_once(endpoint, base)
            except RegistryError as exc:
                if last or exc.code not in _FALLBACK_CODES:
                    raise
                logger.info("%s: %s; trying %s", base, exc, candidates[number + 1])
                continue
            return base
        raise AssertionError("unreachable")

    async def _ping_once(self, endpoint: Endpoint, base: str) -> None:
        client = self.client(endpoint, base)
        response = await self.transport.send(client, client.build_request("GET", f"{base}/v2/"))
        if response.status_code == 401:
            self.authorizer.learn(base, pick_challenge(response))
        elif response.status_code == 200:
            self.authorizer.learn(base, None)
        else:
            raise await error_for(response, f"{base}/v2/ (is it a registry?)")
        await read_bounded(response, 1 << 16, "ping")


def _bind(
    function: Callable[[Endpoint, str], Awaitable[None]], endpoint: Endpoint, base: str
) -> Callable[[], Awaitable[None]]:
    return lambda: function(endpoint, base)


async def _login_error(response: httpx.Response) -> RegistryError:
    if response.status_code in (401, 403):
        await response.aclose()
        return RegistryError(
            response.status_code, BAD_CREDENTIALS, "login: incorrect username or password"
        )
    return await error_for(response, "login")


def auth_name(endpoint: Endpoint) -> str:
    """Whose credentials an endpoint gets: the registry's, or a mirror's own host's."""
    if endpoint.mirror:
        return httpx.URL(endpoint.url).netloc.decode()
    return endpoint.registry


class Repository:
    """One repository (``library/busybox``) on one endpoint, with the scopes to ask for."""

    def __init__(
        self, session: RegistrySession, endpoint: Endpoint, name: str, scopes: tuple[str, ...]
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.name = name
        self.scopes = scopes

    def __repr__(self) -> str:
        return f"Repository({self.endpoint.url}/{self.name})"

    async def send_once(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One authorized request (re-sent once with a fresh token after a 401), streamed.
        ``path`` is relative to ``/v2/<name>/`` or an absolute URL (an upload location)."""
        session, endpoint = self.session, self.endpoint
        base = await session.base_url(endpoint)
        client = session.client(endpoint, base)
        url = path if "://" in path else f"{base}/v2/{self.name}/{path}"
        response: httpx.Response | None = None
        for fresh in (False, True):
            auth = await session.authorizer.header(base, auth_name(endpoint), self.scopes)
            request = client.build_request(
                method, url, headers=_with_auth(headers, auth), content=content, params=params
            )
            response = await session.transport.send(client, request)
            challenge = pick_challenge(response) if response.status_code == 401 else None
            if challenge is None or fresh:
                return response
            await response.aclose()
            logger.info("%s %s: authorization refused; trying again", method, request.url.path)
            session.authorizer.learn(base, challenge)
            session.authorizer.forget(base, auth_name(endpoint), self.scopes)
        assert response is not None
        return response

    async def send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        what: str = "",
    ) -> httpx.Response:
        """``send_once`` with retries; an unexpected status is raised as ``RegistryError``."""

        async def attempt() -> httpx.Response:
            response = await self.send_once(
                method, path, headers=headers, content=content, params=params
            )
            if response.status_code not in expect:
                raise await error_for(response, what or f"{method} {self.name}/{path}")
            return response

        return await self.session.transport.retrying(what or method, attempt)


def _with_auth(headers: Mapping[str, str] | None, auth: str | None) -> dict[str, str]:
    merged = dict(headers or {})
    if auth is not None:
        merged["Authorization"] = auth
    return merged
