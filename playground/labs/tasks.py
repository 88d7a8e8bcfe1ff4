"""Celery tasks of labs: thin wrappers of services, idempotent, late-acknowledged, with a
time limit. Both are periodic (see ``playground.celery``)."""

from __future__ import annotations

import logging

from celery import shared_task

from playground.labs import services

logger = logging.getLogger(__name__)


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
