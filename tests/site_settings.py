"""Settings of the site under test: the real settings, in debug mode, with an in-memory
channel layer and a fast password hasher. Tests that need Redis or a live server start their
own and pass their addresses to subprocesses through PLAYGROUND_* variables."""

from __future__ import annotations

import os

os.environ.setdefault("PLAYGROUND_DEBUG", "1")

from playground.settings import *  # noqa: F403

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
