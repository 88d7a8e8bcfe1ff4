"""Launching an instance's container (at once, or concurrently on the server's loop) from
its image and resources, and recording the outcome: running, and its terminals told it is
ready; or failed, with the reason kept on the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from functools import partial
from typing import Any

from channels.db import database_sync_to_async

from playground import background, engine, live
from playground.errors import ApplicationError
from playground.labs.models import PENDING_STATUSES, EndReason, Instance, InstanceStatus, Lab
from playground.labs.policy import lab_owner, limits_for
from playground.labs.services.ending import lab_end
from playground.labs.services.notify import _notify, _tell, instance_group, instance_ready_key

logger = logging.getLogger(__name__)


async def _instance_launch_soon(instance: Instance) -> None:
    """``_instance_launch`` on the server's loop: the engine is asked at once, without a
    thread hop, and the terminals hear of the container as soon as it is created, before
    the database does: they attach while it starts, and its first output reaches them. The
    database is written from worker threads."""
    in_thread = partial(database_sync_to_async, thread_sensitive=False)
    try:
        created = await engine.engine().create(_instance_spec(instance))
    except ApplicationError as exc:
        await in_thread(_instance_failed)(instance=instance, error=exc)
        raise
    container_id = created.container_id
    background.notice(instance_ready_key(instance.id), container_id)
    ready = {"type": "instance.ready", "container_id": container_id}
    told = asyncio.gather(
        _tell(instance_group(instance.id), ready),
        in_thread(_instance_created)(instance=instance, container_id=container_id),
    )
    try:
        await engine.engine().start(container_id)
    except ApplicationError as exc:
        await told
        await in_thread(_instance_failed)(instance=instance, error=exc)
        raise
    await told
    await in_thread(_instance_started)(instance=instance, container_id=container_id, notify=False)


def _instance_created(*, instance: Instance, container_id: str) -> None:
    """The container exists, not started yet: terminals that ask the database attach."""
    Instance.objects.filter(id=instance.id, status=InstanceStatus.STARTING).update(
        container_id=container_id
    )


def instance_launch(*, instance_id: int) -> Instance | None:
    """Launch the container of a starting instance; any other is left alone. A failure is
    recorded on the instance, then raised."""
    instance = (
        Instance.objects.select_related("image")
        .filter(id=instance_id, status=InstanceStatus.STARTING)
        .first()
    )
    if instance is not None:
        _instance_launch(instance=instance)
    return instance


def _instance_spec(instance: Instance) -> engine.InstanceSpec:
    lab_id = str(instance.lab_id)
    return engine.InstanceSpec(
        image=instance.image_reference,
        name=f"pg-{instance.lab_id.hex}-{instance.number}",
        hostname=instance.name,
        shell=tuple(shlex.split(instance.image.shell)),
        labels={
            engine.LABEL_SITE: "1",
            engine.LABEL_LAB: lab_id,
            engine.LABEL_INSTANCE: str(instance.id),
        },
        **instance_resources(instance),
    )


def instance_resources(instance: Instance) -> dict[str, Any]:
    """Memory, CPUs and pids: the image's own, else the lab owner's user class's."""
    limits = limits_for(lab_owner(instance.lab))
    image = instance.image
    return {
        "memory": image.memory or limits.memory,
        "cpus": image.cpus or limits.cpus,
        "pids": image.pids or limits.pids,
    }


def _instance_launch(*, instance: Instance) -> None:
    """Create and start the instance's container. A failure is recorded on the instance
    (and ends the lab if it was the lab's first), then raised."""
    try:
        state = engine.blocking(engine.engine().launch)(_instance_spec(instance))
    except ApplicationError as exc:
        _instance_failed(instance=instance, error=exc)
        raise
    _instance_started(instance=instance, container_id=state.container_id)


def _instance_started(*, instance: Instance, container_id: str, notify: bool = True) -> None:
    updated = Instance.objects.filter(id=instance.id, status__in=PENDING_STATUSES).update(
        status=InstanceStatus.RUNNING, container_id=container_id
    )
    if not updated:
        # Removed, or its lab ended, while the engine launched it.
        logger.info("instance %s went away while starting: removing %s", instance.id, container_id)
        with contextlib.suppress(ApplicationError):  # else reconciliation removes it
            engine.blocking(engine.engine().remove)(container_id)
        return
    instance.status, instance.container_id = InstanceStatus.RUNNING, container_id
    live.state().instance_status_set(instance.id, instance.status)
    if notify:
        _notify(
            instance_group(instance.id), {"type": "instance.ready", "container_id": container_id}
        )


def _instance_failed(*, instance: Instance, error: ApplicationError) -> None:
    """Keep why the instance could not start, and tell its terminals; if it was the lab's
    first, the lab could not be started: it ends."""
    logger.warning("instance %s failed: %s", instance.id, error.log_message)
    message = error.user_message[:500]
    updated = Instance.objects.filter(id=instance.id, status__in=PENDING_STATUSES).update(
        status=InstanceStatus.FAILED, error=message
    )
    if not updated:
        return
    instance.status, instance.error = InstanceStatus.FAILED, message
    live.state().instance_status_set(instance.id, instance.status)
    if instance.number == 1:  # its page reloads, and says why
        lab_end(lab=Lab.objects.get(id=instance.lab_id), reason=EndReason.FAILED)
    else:
        _notify(instance_group(instance.id), {"type": "instance.failed", "message": message})
