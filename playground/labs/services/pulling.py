"""Pulling the image of an instance that waits for it: enqueueing the ``instance_pull``
Celery task, pulling with progress told to Redis and the instance's terminals, then
launching it; or failing it when the pull cannot be enqueued or runs out of time.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from kombu.exceptions import OperationalError

from playground import engine, live
from playground.errors import ApplicationError
from playground.labs.models import PENDING_STATUSES, Instance, InstanceStatus
from playground.labs.progress import PullReport
from playground.labs.services.launch import _instance_failed, _instance_launch
from playground.labs.services.notify import _tell, instance_group

logger = logging.getLogger(__name__)


def _pull_enqueue(*, instance: Instance) -> None:
    from playground.labs import tasks  # tasks import this package

    try:
        tasks.instance_pull.delay(instance.id)
    except OperationalError as exc:  # the broker is down: say so rather than wait forever
        _instance_failed(
            instance=instance,
            error=ApplicationError(
                "The playground could not start downloading this image. Try again in a moment.",
                f"enqueue the pull of instance {instance.id}: {exc}",
                temporary=True,
            ),
        )


def _pulling(instance_id: int) -> Instance | None:
    return (
        Instance.objects.select_related("image")
        .filter(id=instance_id, status=InstanceStatus.PULLING, lab__ended_at__isnull=True)
        .first()
    )


def instance_pull(*, instance_id: int, may_retry: bool = False) -> None:
    """Pull the image of an instance that waits for it, reporting progress to Redis and to
    its terminals, then launch it. Idempotent: an instance that does not wait (any more) is
    left alone. A temporary failure is raised if ``may_retry`` (the task tries again); any
    other failure is recorded on the instance."""
    instance = _pulling(instance_id)
    if instance is None:
        return
    try:
        engine.blocking(_pull)(instance.id, instance.image_reference)
    except ApplicationError as exc:
        if exc.temporary and may_retry:
            logger.info("pull for instance %s will be retried: %s", instance.id, exc.log_message)
            raise
        _instance_failed(instance=instance, error=exc)
        return
    if not Instance.objects.filter(id=instance.id, status=InstanceStatus.PULLING).update(
        status=InstanceStatus.STARTING
    ):
        return  # removed while its image was pulled
    instance.status = InstanceStatus.STARTING
    with contextlib.suppress(ApplicationError):  # recorded on the instance
        _instance_launch(instance=instance)


def instance_pull_abandon(*, instance_id: int) -> None:
    """The pull ran out of time: the instance fails, saying so."""
    instance = Instance.objects.filter(id=instance_id, status__in=PENDING_STATUSES).first()
    if instance is not None:
        _instance_failed(
            instance=instance,
            error=ApplicationError(
                "Downloading the image took too long. Try again later.",
                f"the pull for instance {instance_id} ran out of time",
            ),
        )


async def _pull(instance_id: int, reference: str) -> None:
    report = PullReport(reference)
    try:
        async for step in engine.engine().pull(reference):
            if report.take(step):
                await _pull_publish(instance_id, report.snapshot())
    except ApplicationError as exc:
        report.note = exc.user_message
        await _pull_publish(instance_id, report.snapshot())
        raise


async def _pull_publish(instance_id: int, progress: dict[str, Any]) -> None:
    """Progress to Redis (for pages loaded mid-pull) and to the instance's terminals. Losing
    it loses only the picture, not the pull."""
    try:
        store = sync_to_async(live.state().pull_progress_set, thread_sensitive=False)
        await store(instance_id, progress)
    except Exception:
        logger.warning("could not store the pull progress of %s", instance_id, exc_info=True)
    await _tell(instance_group(instance_id), {"type": "instance.pull", "progress": progress})
