"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens fetched from the
challenge's realm (anonymously or with credentials) and cached until they expire, and basic
auth.

The challenge of each endpoint is learnt once (from its ``/v2/`` answer or a 401) and kept
for the session. Tokens are cached by (realm, service, scopes, user). A request that gets a
401 with a fresh token is not retried again: a token endpoint that keeps handing out useless
tokens ends in an error instead of a loop. Neither tokens nor passwords are ever logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, field

import httpx

from runtime.errors import RegistryError
from runtime.registry.auth import AuthStore, Credentials
from runtime.registry.config import RegistryConfig
from runtime.registry.transport import Transport, error_for, read_bounded

logger = logging.getLogger(__name__)

BAD_CREDENTIALS = "INCORRECT_CREDENTIALS"  # ours: distinguishes "who are you" from "no access"
DEFAULT_EXPIRY = 60.0  # seconds, the distribution spec's default and minimum
_EXPIRY_MARGIN = 5.0
MAX_TOKEN_RESPONSE = 1 << 20
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_ITEM = re.compile(rf'[\s,]*({_TOKEN})(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer" or "basic"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Every challenge in ``WWW-Authenticate`` header values (RFC 7235 auth-params)."""
    found: list[tuple[str, dict[str, str]]] = []
    for value in values:
        pos = 0
        while pos < len(value):
            match = _ITEM.match(value, pos)
            if match is None or match.end() == pos:
                break
            pos = match.end()
            name, quoted, bare = match.groups()
            if quoted is None and bare is None:
                found.append((name.lower(), {}))
            elif found:
                text = quoted if quoted is not None else bare
                found[-1][1][name.lower()] = re.sub(r"\\(.)", r"\1", text)
    return [Challenge(scheme, params) for scheme, params in found]


def pick_challenge(response: httpx.Response) -> Challenge | None:
    """The bearer challenge if there is one, else basic, else None."""
    challenges = parse_challenges(response.headers.get_list("WWW-Authenticate"))
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires: float  # time.monotonic()


class Authorizer:
    """``Authorization`` header values for requests to registry endpoints."""

    def __init__(self, transport: Transport, store: AuthStore | None, config: RegistryConfig):
        self._transport = transport
        self._store = store
        self._config = config
        self._challenges: dict[str, Challenge | None] = {}
        self._tokens: dict[tuple[str, str, tuple[str, ...], str], _Token] = {}
        self._locks: dict[tuple[str, str, tuple[str, ...], str], asyncio.Lock] = {}

    def learn(self, base_url: str, challenge: Challenge | None) -> None:
        self._challenges[base_url] = challenge

    def credentials(self, auth_name: str) -> Credentials | None:
        return None if self._store is None else self._store.get(auth_name)

    async def header(
        self,
        base_url: str,
        auth_name: str,
        scopes: tuple[str, ...],
        *,
        credentials: Credentials | None = None,
    ) -> str | None:
        """What to send to ``base_url`` (whose challenge is known) for ``scopes``."""
        challenge = self._challenges.get(base_url)
        if challenge is None:
            return None
        creds = credentials or self.credentials(auth_name)
        if challenge.scheme == "basic":
            return None if creds is None else f"Basic {creds.encoded()}"
        token = await self.token(challenge, scopes, creds)
        return f"Bearer {token}"

    def forget(self, base_url: str, auth_name: str, scopes: tuple[str, ...]) -> None:
        """Drop the cached token for these scopes (the registry refused it)."""
        challenge = self._challenges.get(base_url)
        if challenge is not None:
            creds = self.credentials(auth_name)
            self._tokens.pop(_token_key(challenge, scopes, creds), None)

    async def token(
        self, challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None
    ) -> str:
        key = _token_key(challenge, scopes, creds)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # parallel downloads share one token request
            cached = self._tokens.get(key)
            if cached is not None and cached.expires > time.monotonic():
                return cached.value
            token = await self._transport.retrying(
                "token request", lambda: self._fetch(challenge, scopes, creds)
            )
            self._tokens[key] = token
            return token.value

    async def _fetch(
        self, challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None
    ) -> _Token:
        realm = self._realm(challenge)
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", scope) for scope in scopes]
        headers = {"Accept": "application/json"}
        if creds is not None:
            params.append(("account", creds.username))
            headers["Authorization"] = f"Basic {creds.encoded()}"
        host = realm.netloc.decode()
        client = self._transport.client(
            str(realm),
            verify=not self._config.is_insecure(host),
            ca_files=self._config.host(host).ca_files,
        )
        request = client.build_request("GET", realm, params=params, headers=headers)
        response = await self._transport.send(client, request)
        if response.status_code != 200:
            raise await _token_error(response, creds)
        body = await read_bounded(response, MAX_TOKEN_RESPONSE, "token response")
        logger.debug("got a token from %s for %s", host, " ".join(scopes) or "no scope")
        return _parse_token(body, host)

    def _realm(self, challenge: Challenge) -> httpx.URL:
        realm = challenge.params.get("realm", "")
        try:
            url = httpx.URL(realm)
        except httpx.InvalidURL as exc:
            raise RegistryError(401, "UNAUTHORIZED", f"invalid token realm {realm!r}") from exc
        host = url.netloc.decode()
        if url.scheme not in ("http", "https") or not host:
            raise RegistryError(401, "UNAUTHORIZED", f"invalid token realm {realm!r}")
        if url.scheme == "http" and not self._config.is_insecure(host):
            raise RegistryError(
                401, "UNAUTHORIZED", f"refusing plain-HTTP token realm {realm!r} of a secure host"
            )
        return url


def _token_key(
    challenge: Challenge, scopes: tuple[str, ...], creds: Credentials | None
) -> tuple[str, str, tuple[str, ...], str]:
    params = challenge.params
    return (
        params.get("realm", ""),
        params.get("service", ""),
        scopes,
        creds.username if creds else "",
    )


async def _token_error(response: httpx.Response, creds: Credentials | None) -> RegistryError:
    if response.status_code in (401, 403):
        await response.aclose()
        if creds is not None:
            return RegistryError(
                response.status_code,
                BAD_CREDENTIALS,
                "token request: incorrect username or password",
            )
        return RegistryError(response.status_code, "UNAUTHORIZED", "token request: denied")
    return await error_for(response, "token request")


def _parse_token(body: bytes, host: str) -> _Token:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RegistryError(200, "INVALID_TOKEN", f"token response of {host} is not JSON") from exc
    if not isinstance(document, dict):
        raise RegistryError(200, "INVALID_TOKEN", f"token response of {host} is not an object")
    value = document.get("token") or document.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError(200, "INVALID_TOKEN", f"token response of {host} has no token")
    expires_in = document.get("expires_in")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool):
        expires_in = DEFAULT_EXPIRY
    lifetime = max(float(expires_in), DEFAULT_EXPIRY) - _EXPIRY_MARGIN
    return _Token(value, time.monotonic() + lifetime)
