"""The end of labs: ending one (``lab_end``), removing its containers (``lab_teardown``),
ending those whose lifetime ran out (``labs_expire_due``), and discarding one instance.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.utils import timezone

from playground import engine, live
from playground.errors import ApplicationError
from playground.labs import selectors
from playground.labs.models import EndReason, Instance, InstanceStatus, Lab
from playground.labs.services.notify import _notify, instance_group, lab_group

logger = logging.getLogger(__name__)


def lab_end(*, lab: Lab, reason: EndReason) -> Lab:
    """Mark the lab ended, tell its terminals, and remove its containers. If the engine
    cannot remove them now, the periodic ``labs_expire_due`` task tries again."""
    if lab.is_active:
        lab.ended_at = timezone.now()
        lab.ended_reason = reason
        lab.save(update_fields=["ended_at", "ended_reason"])
        logger.info("lab %s ended: %s", lab.id, reason)
    _notify(lab_group(lab.id), {"type": "lab.ended", "reason": lab.get_ended_reason_display()})
    try:
        lab_teardown(lab_id=lab.id)
    except ApplicationError as exc:
        logger.warning("lab %s: teardown left for later: %s", lab.id, exc.log_message)
    return lab


def lab_teardown(*, lab_id: uuid.UUID | str) -> int:
    """Remove the containers of an ended lab. Idempotent; returns how many were removed."""
    lab = Lab.objects.get(id=lab_id)
    if lab.is_active:
        return 0
    removed = 0
    for instance in lab.instances.exclude(status=InstanceStatus.REMOVED):
        _instance_discard(instance=instance)
        removed += 1
    live.state().lab_forget(str(lab.id), list(lab.instances.values_list("id", flat=True)))
    return removed


def labs_expire_due(*, now: datetime | None = None) -> dict[str, int]:
    """End every lab whose lifetime ran out, and remove the containers of every ended lab
    that still has some (a teardown that failed earlier is retried here)."""
    expired = 0
    for lab in selectors.labs_due(now=now):
        lab_end(lab=lab, reason=EndReason.EXPIRED)
        expired += 1
    retried = 0
    for lab in selectors.labs_ended_with_instances():
        try:
            retried += lab_teardown(lab_id=lab.id)
        except ApplicationError as exc:
            logger.warning("lab %s: teardown failed again: %s", lab.id, exc.log_message)
    return {"expired": expired, "removed_late": retried}


def _instance_discard(*, instance: Instance) -> None:
    if instance.container_id:
        engine.blocking(engine.engine().remove)(instance.container_id)
    instance.status = InstanceStatus.REMOVED
    instance.removed_at = timezone.now()
    instance.save(update_fields=["status", "removed_at"])
    _notify(instance_group(instance.id), {"type": "instance.removed"})
