"""Reconciliation: rebuilding Redis's live state from the engine and the database, removing
orphaned containers, and failing instances stuck waiting for a launch or pull that died.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from playground import engine, live
from playground.errors import ApplicationError
from playground.labs.models import PENDING_STATUSES, Instance, InstanceStatus, Lab
from playground.labs.services.launch import _instance_failed

logger = logging.getLogger(__name__)

# Reconciliation fails instances still waiting after this long (their launch or pull died).
STARTING_GRACE = timedelta(minutes=2)
PULLING_GRACE = timedelta(hours=1)

_ENGINE_TO_STATUS = {
    "created": InstanceStatus.STARTING,
    "running": InstanceStatus.RUNNING,
    "exited": InstanceStatus.EXITED,
    "missing": InstanceStatus.LOST,
}


def live_state_rebuild() -> dict[str, int]:
    """Rebuild Redis's live state from the engine and the database, after Redis lost it or
    the site missed events: instance statuses, lab expiries; remove orphaned containers
    (the engine's containers of instances the database says are gone)."""
    containers = {c.container_id: c for c in engine.blocking(engine.engine().containers)()}
    state = live.state()
    seen: set[str] = set()
    waiting: set[str] = set()  # instances whose container may not be in the database yet
    counts = {"instances": 0, "labs": 0, "orphans": 0, "lost": 0, "stuck": 0}
    for lab in Lab.objects.filter(ended_at__isnull=True).prefetch_related("instances"):
        state.lab_expiry_set(str(lab.id), lab.expires_at.timestamp())
        counts["labs"] += 1
        for instance in lab.instances.all():
            if instance.status in PENDING_STATUSES and not instance.container_id:
                waiting.add(str(instance.id))
                counts["stuck"] += _fail_if_stuck(instance)
                continue
            if not instance.is_active or not instance.container_id:
                continue
            seen.add(instance.container_id)
            found = containers.get(instance.container_id)
            status = _ENGINE_TO_STATUS.get(found.status if found else "missing", instance.status)
            if status != instance.status:
                instance.status = status
                instance.save(update_fields=["status"])
            counts["lost"] += status == InstanceStatus.LOST
            state.instance_status_set(instance.id, status)
            counts["instances"] += 1
    for container_id in containers.keys() - seen:
        if containers[container_id].labels.get(engine.LABEL_INSTANCE) in waiting:
            continue
        logger.warning("removing orphaned container %s", container_id[:12])
        engine.blocking(engine.engine().remove)(container_id)
        counts["orphans"] += 1
    return counts


def _fail_if_stuck(instance: Instance) -> bool:
    """An instance still waiting long after its launch or pull should have ended (the
    server or worker that did it stopped) fails, so that its owner is not kept waiting."""
    grace = PULLING_GRACE if instance.status == InstanceStatus.PULLING else STARTING_GRACE
    if instance.created > timezone.now() - grace:
        return False
    _instance_failed(
        instance=instance,
        error=ApplicationError(
            "This instance did not start in time. Remove it and add another.",
            f"instance {instance.id} was {instance.status} for more than {grace}",
        ),
    )
    return True
