"""The site's one door to the container engine: the only package that imports
``runtime.client``. It speaks in the site's terms (launch an instance, attach a terminal,
pull an image, tell whether one is here), and turns every runtime error into an
``ApplicationError``.

``Engine`` is the interface; ``RuntimeEngine`` is the real one (the daemon's unix socket at
``settings.ENGINE_SOCKET``); ``FakeEngine`` stands in for it in unit tests, including the
failure modes (an engine that is down, slow, or has no such image).

``model`` holds the site's terms, ``translation`` the runtime's errors as sentences,
``daemon`` the real engine, ``fake`` the fake one, and ``access`` the configured engine.
"""

from __future__ import annotations

from playground.engine.access import blocking, engine, use
from playground.engine.daemon import COALESCE, PRESENT_TTL, READ_AHEAD, RuntimeEngine
from playground.engine.fake import FakeContainer, FakeEngine, FakeTerminal
from playground.engine.model import (
    LABEL_INSTANCE,
    LABEL_LAB,
    LABEL_SITE,
    ContainerState,
    Engine,
    InstanceSpec,
    PullStep,
    Terminal,
    Usage,
    familiar,
)
from playground.engine.translation import translate

__all__ = [
    "COALESCE",
    "LABEL_INSTANCE",
    "LABEL_LAB",
    "LABEL_SITE",
    "PRESENT_TTL",
    "READ_AHEAD",
    "ContainerState",
    "Engine",
    "FakeContainer",
    "FakeEngine",
    "FakeTerminal",
    "InstanceSpec",
    "PullStep",
    "RuntimeEngine",
    "Terminal",
    "Usage",
    "blocking",
    "engine",
    "familiar",
    "translate",
    "use",
]
