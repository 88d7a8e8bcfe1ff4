"""The registry client: pull and push images over the OCI distribution API, log in and out.

Everything here is asynchronous and works on an ``ImageStore``; progress comes as an async
iterator of frozen events. ``cli`` holds what the command line's ``pull``, ``push``,
``login`` and ``logout`` subcommands call.
"""

from __future__ import annotations

from runtime.registry.auth import AuthStore, Credentials
from runtime.registry.config import RegistryConfig, RegistryHost, load_config
from runtime.registry.login import login, logout
from runtime.registry.progress import PullEvent, PushEvent
from runtime.registry.pull import pull, pull_image
from runtime.registry.push import push
from runtime.registry.session import RegistrySession

__all__ = [
    "AuthStore",
    "Credentials",
    "PullEvent",
    "PushEvent",
    "RegistryConfig",
    "RegistryHost",
    "RegistrySession",
    "load_config",
    "login",
    "logout",
    "pull",
    "pull_image",
    "push",
]
