"""WebSocket routes (served by Channels inside the origin and auth middleware)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from playground.labs.consumers import TerminalConsumer

# types-channels does not type URLRouter's patterns for django.urls.path.
terminal: Any = TerminalConsumer.as_asgi()

websocket_urlpatterns: list[Any] = [
    path("ws/labs/<uuid:lab_id>/instances/<int:instance_id>/terminal/", terminal),
]
