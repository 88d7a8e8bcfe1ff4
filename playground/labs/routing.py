from __future__ import annotations

from django.urls import path

from playground.labs.consumers import TerminalConsumer

websocket_urlpatterns = [
    path(
        "ws/labs/<uuid:lab_id>/instances/<int:instance_id>/terminal/",
        TerminalConsumer.as_asgi(),
    ),
]
