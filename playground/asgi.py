"""The ASGI entry point daphne serves: HTTP through Django, WebSockets through Channels behind
the allowed-hosts origin check and the session/auth middleware."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
django_application = get_asgi_application()
# `make up` serves /static/ itself; a deployment may leave that to its proxy.
http_application = (
    ASGIStaticFilesHandler(django_application) if settings.SERVE_STATIC else django_application
)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from playground.background import remember_loop  # noqa: E402
from playground.labs.routing import websocket_urlpatterns  # noqa: E402

# remember_loop: views hand work to the server's loop (playground.background).
application = remember_loop(
    ProtocolTypeRouter(
        {
            "http": http_application,
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
            ),
        }
    )
)
