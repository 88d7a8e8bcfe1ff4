"""The Celery application (Redis broker) and the beat schedule of the periodic tasks."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

app = Celery("playground")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **kwargs: object) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = {
        "labs-expire": {
            "task": "playground.labs.tasks.labs_expire_due",
            "schedule": settings.EXPIRE_INTERVAL.total_seconds(),
        },
        "labs-reconcile": {
            "task": "playground.labs.tasks.live_state_rebuild",
            "schedule": settings.RECONCILE_INTERVAL.total_seconds(),
        },
    }
