"""The Playground site: a Django project whose Celery app is loaded with it, so that tasks
enqueued from views and services find their broker."""

from __future__ import annotations

from playground.celery import app as celery_app

__all__ = ["celery_app"]
