"""``login`` and ``logout``: check credentials against a registry's ``/v2/`` endpoint (or
its token service) and keep them in the engine's ``auth.json``; forget them again."""

from __future__ import annotations

import logging

from runtime.errors import InvalidArgument, InvalidReference
from runtime.image.reference import parse_reference
from runtime.registry.auth import AuthStore, Credentials, registry_key
from runtime.registry.config import RegistryConfig
from runtime.registry.session import RegistrySession
from runtime.registry.tasks import using_session

logger = logging.getLogger(__name__)


def registry_name(server: str) -> str:
    """``docker.io`` for Docker Hub's names (and for no name), else ``host[:port]``."""
    key = registry_key(server) if server.strip() else "docker.io"
    try:
        domain = parse_reference(f"{key}/probe").domain
    except InvalidReference as exc:
        raise InvalidArgument("registry", f"{server!r} is not a registry host") from exc
    if key != "docker.io" and domain != key:
        raise InvalidArgument("registry", f"{server!r} is not a registry host")
    return key


async def login(
    server: str,
    username: str,
    password: str,
    auth: AuthStore,
    *,
    config: RegistryConfig,
    session: RegistrySession | None = None,
) -> str:
    """Verify the credentials with the registry, then save them; returns the registry name."""
    registry = registry_name(server)
    if not username or not password:
        raise InvalidArgument("login", "username and password are both required")
    credentials = Credentials(username, password)
    endpoint = config.endpoints(registry, mirrors=False)[-1]
    async with using_session(session, config, auth) as active:
        await active.ping(endpoint, credentials)
    auth.save(registry, credentials)
    logger.info("logged in to %s as %s", registry, username)
    return registry


def logout(server: str, auth: AuthStore) -> bool:
    """Forget the credentials of ``server``; False if there were none."""
    return auth.remove(registry_name(server))
