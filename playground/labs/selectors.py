"""Reads: labs and instances as their owners may see them, capacity, live status."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from playground import engine, live
from playground.errors import ApplicationError, NotFound, PermissionDenied
from playground.labs.models import ACTIVE_STATUSES, PENDING_STATUSES, Instance, InstanceStatus, Lab
from playground.labs.policy import Owner


def lab_get(*, lab_id: uuid.UUID | str, owner: Owner) -> Lab:
    """The lab, if ``owner`` owns it: ``NotFound`` or ``PermissionDenied`` otherwise."""
    lab = Lab.objects.filter(id=lab_id).first()
    if lab is None:
        raise NotFound(f"lab {lab_id}")
    if not owner.owns(lab):
        raise PermissionDenied(f"lab {lab_id}")
    return lab


def instance_get(*, lab: Lab, instance_id: int) -> Instance:
    instance = lab.instances.filter(id=instance_id).select_related("image").first()
    if instance is None:
        raise NotFound(f"instance {instance_id} of lab {lab.id}")
    return instance


def instance_for_terminal(*, lab_id: uuid.UUID | str, instance_id: int, owner: Owner) -> Instance:
    """The instance a terminal may attach to, or wait for: owned, active, in an active lab.
    One without a container yet is being launched or pulled."""
    lab = lab_get(lab_id=lab_id, owner=owner)
    instance = instance_get(lab=lab, instance_id=instance_id)
    if not lab.is_active or not instance.is_active:
        raise ApplicationError("This instance is not running.", f"{instance} is not attachable")
    return instance


@dataclass(frozen=True)
class Readiness:
    """Where a waiting terminal's instance is: its status ("removed" once it or its lab is
    gone), its container once launched, why it failed, and the progress of its pull."""

    status: str
    container_id: str = ""
    error: str = ""
    pull: dict[str, Any] | None = None


def instance_readiness(*, instance_id: int) -> Readiness:
    instance = Instance.objects.select_related("lab").filter(id=instance_id).first()
    if instance is None or not instance.lab.is_active:
        return Readiness(InstanceStatus.REMOVED)
    pull = None
    if instance.status == InstanceStatus.PULLING:
        pull = live.state().pull_progress(instance.id)
    return Readiness(instance.status, instance.container_id, instance.error, pull)


def instance_why_gone(*, instance_id: int) -> tuple[str, str]:
    """Why a terminal's stream ended: ``("ended", reason)`` when the lab ended,
    ``("removed", "")`` when the instance was removed, ``("failed", error)`` when it could
    not start, ``("pending", "")`` when the database does not know yet (a container that
    failed to start ends the stream of a terminal attached early), else ``("exited", "")``."""
    instance = Instance.objects.select_related("lab").filter(id=instance_id).first()
    if instance is None or instance.status == InstanceStatus.REMOVED:
        if instance is not None and not instance.lab.is_active:
            return "ended", instance.lab.get_ended_reason_display()
        return "removed", ""
    if not instance.lab.is_active:
        return "ended", instance.lab.get_ended_reason_display()
    if instance.status == InstanceStatus.FAILED:
        return "failed", instance.error
    if instance.status in PENDING_STATUSES:
        return "pending", ""
    return "exited", ""


def labs_active(*, owner: Owner) -> QuerySet[Lab]:
    labs = Lab.objects.filter(ended_at__isnull=True)
    if owner.user_id is not None:
        return labs.filter(owner_id=owner.user_id)
    return labs.filter(owner__isnull=True, session_key=owner.session_key or "-")


def labs_recent(*, owner: Owner, limit: int = 10) -> list[Lab]:
    if owner.user_id is not None:
        labs = Lab.objects.filter(owner_id=owner.user_id)
    else:
        labs = Lab.objects.filter(owner__isnull=True, session_key=owner.session_key or "-")
    return list(labs.order_by("-created")[:limit])


def instances_active(*, lab: Lab) -> QuerySet[Instance]:
    return lab.instances.filter(status__in=ACTIVE_STATUSES).select_related("image")


def instances_shown(*, lab: Lab) -> QuerySet[Instance]:
    """The tabs of the lab's page: active instances, and failed ones with their reason."""
    shown = (*ACTIVE_STATUSES, InstanceStatus.FAILED)
    return lab.instances.filter(status__in=shown).select_related("image")


def lab_failures(*, lab: Lab) -> list[tuple[str, str]]:
    """(name, reason) of each instance of the lab that could not be started."""
    return list(lab.instances.exclude(error="").values_list("name", "error"))


def instances_running_count() -> int:
    """Instances holding host resources now: what the capacity limit counts."""
    return Instance.objects.filter(status__in=ACTIVE_STATUSES, lab__ended_at__isnull=True).count()


def labs_due(*, now: datetime | None = None) -> QuerySet[Lab]:
    return Lab.objects.filter(ended_at__isnull=True, expires_at__lte=now or timezone.now())


def labs_ended_with_instances() -> QuerySet[Lab]:
    return Lab.objects.filter(
        ended_at__isnull=False, instances__status__in=ACTIVE_STATUSES
    ).distinct()


def lab_status(*, lab: Lab) -> dict[str, Any]:
    """What the lab page polls: time left, and each instance's status, CPU, memory and how
    many terminals are attached."""
    state = live.state()
    remaining = max(0.0, (lab.expires_at - timezone.now()).total_seconds())
    instances = []
    for instance in instances_shown(lab=lab) if lab.is_active else []:
        usage = None
        if instance.container_id:
            try:
                usage = engine.blocking(engine.engine().usage)(instance.container_id)
            except ApplicationError:
                usage = None
        cpu = state.cpu_percent(instance.id, usage.cpu_ns, time.time()) if usage else None
        instances.append(
            {
                "id": instance.id,
                "name": instance.name,
                "image": instance.image.title,
                "status": state.instance_status(instance.id) or instance.status,
                "cpu_percent": None if cpu is None else round(cpu, 1),
                "memory": usage.memory if usage else None,
                "memory_limit": usage.memory_limit if usage else None,
                "attached": state.presence_count(instance.id),
                "error": instance.error,
            }
        )
    return {
        "id": str(lab.id),
        "active": lab.is_active,
        "ended_reason": lab.get_ended_reason_display() if not lab.is_active else None,
        "expires_at": lab.expires_at.isoformat(),
        "remaining_seconds": int(remaining),
        "can_extend": lab.is_active and lab.expires_at < lab.max_expires_at,
        "instances": instances,
    }
