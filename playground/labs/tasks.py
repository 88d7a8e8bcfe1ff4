"""Celery tasks of labs: thin wrappers of services, idempotent, late-acknowledged, with a
time limit. ``labs_expire_due`` and ``live_state_rebuild`` are periodic (see
``playground.celery``); ``instance_pull`` is enqueued when an instance's image is not on the
host."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from playground.errors import ApplicationError
from playground.labs import services

logger = logging.getLogger(__name__)

PULL_RETRIES = 3


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100, ignore_result=True)
def labs_expire_due() -> dict[str, int]:
    """End the labs whose lifetime ran out and remove their containers."""
    result = services.labs_expire_due()
    if any(result.values()):
        logger.info("labs expired: %s", result)
    return result


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280, ignore_result=True)
def live_state_rebuild() -> dict[str, int]:
    """Rebuild Redis's live state from the engine and the database; remove orphans."""
    result = services.live_state_rebuild()
    logger.info("live state rebuilt: %s", result)
    return result


@shared_task(
    bind=True,
    acks_late=True,
    time_limit=900,
    soft_time_limit=870,
    ignore_result=True,
    max_retries=PULL_RETRIES,
)
def instance_pull(self: Any, instance_id: int) -> None:
    """Pull the image of an instance that waits for it, then launch the instance. Only
    temporary failures (the registry or the engine unreachable) are retried, with backoff."""
    try:
        services.instance_pull(
            instance_id=instance_id, may_retry=self.request.retries < self.max_retries
        )
    except ApplicationError as exc:
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    except SoftTimeLimitExceeded:
        services.instance_pull_abandon(instance_id=instance_id)
