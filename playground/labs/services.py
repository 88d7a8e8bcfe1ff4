"""Writes: starting, extending and ending labs; adding, restarting and removing instances;
expiring labs and rebuilding the live state. Engine calls go through ``playground.engine``.

The database row of an instance is committed before its container is launched, so that
reconciliation can always tell the site's containers from orphans.
"""

from __future__ import annotations

import logging
import shlex
import uuid
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from playground import engine, live
from playground.catalog.models import Image
from playground.catalog.selectors import image_get
from playground.errors import ApplicationError, AtCapacity, LimitReached
from playground.labs import selectors
from playground.labs.models import EndReason, Instance, InstanceStatus, Lab
from playground.labs.policy import Owner, limits_for

logger = logging.getLogger(__name__)

RATE_WINDOW = 3600


def lab_group(lab_id: uuid.UUID | str) -> str:
    return f"lab-{lab_id}"


def instance_group(instance_id: int) -> str:
    return f"instance-{instance_id}"


def _notify(group: str, message: dict[str, Any]) -> None:
    """Tell the terminals of a lab or instance; they end their own connections."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a missed notice is healed by the attach stream ending anyway
        logger.warning("could not notify %s of %s", group, message.get("type"), exc_info=True)


# -- admission ------------------------------------------------------------------------------


def _admit(*, ticket: str | None) -> None:
    """Let one more instance start, or raise ``AtCapacity`` with the place in the queue.

    Without a ticket, a start is admitted only if nobody is waiting. With one, the first
    ``free`` tickets of the queue are admitted. Two starts at the same moment may both take
    the last slot: the capacity is a soft limit.
    """
    state = live.state()
    free = settings.CAPACITY - selectors.instances_running_count()
    if ticket is None:
        if free >= 1 and state.queue_length() == 0:
            return
        raise AtCapacity(position=None)
    position = state.queue_position(ticket)
    if position is None:
        state.queue_join(ticket)
        position = state.queue_position(ticket) or 1
    if free >= 1 and position <= free:
        state.queue_leave(ticket)
        return
    raise AtCapacity(position=position)


def _check_rate(*, owner: Owner, client_address: str) -> None:
    if not owner.is_anonymous:
        return
    hits = live.state().rate_hit("anon-start", client_address, RATE_WINDOW)
    if hits > settings.ANON_STARTS_PER_HOUR:
        raise LimitReached(
            "Too many labs were started from your address in the last hour. "
            "Sign up to start more, or try again later.",
            f"rate limit: {hits} anonymous starts from {client_address}",
        )


# -- labs -----------------------------------------------------------------------------------


def lab_start(
    *, owner: Owner, image_slug: str, client_address: str, ticket: str | None = None
) -> Lab:
    """A new lab with one instance of ``image_slug``, launched at once."""
    limits = limits_for(owner)
    active = selectors.labs_active(owner=owner).count()
    if active >= limits.labs:
        raise LimitReached(
            f"You already have {active} lab{'s' if active > 1 else ''} running, as many as "
            "you may. End one to start another.",
            f"lab limit {limits.labs} reached",
        )
    image = image_get(slug=image_slug)
    if ticket is None:
        _check_rate(owner=owner, client_address=client_address)
    _admit(ticket=ticket)
    now = timezone.now()
    with transaction.atomic():
        lab = Lab.objects.create(
            owner_id=owner.user_id,
            session_key="" if owner.user_id else (owner.session_key or ""),
            created=now,
            expires_at=now + limits.lifetime,
            max_expires_at=now + limits.max_lifetime,
        )
        instance = _instance_create(lab=lab, image=image)
    live.state().lab_expiry_set(str(lab.id), lab.expires_at.timestamp())
    try:
        _instance_launch(instance=instance)
    except ApplicationError:
        lab_end(lab=lab, reason=EndReason.FAILED)
        raise
    logger.info("lab %s started with %s", lab.id, instance.container_id[:12])
    return lab


def lab_extend(*, lab: Lab) -> Lab:
    if not lab.is_active:
        raise ApplicationError("This lab has ended.", f"extend ended lab {lab.id}")
    wanted = min(lab.expires_at + settings.EXTEND_STEP, lab.max_expires_at)
    if wanted <= lab.expires_at:
        raise LimitReached(
            "This lab cannot be extended any further.", f"lab {lab.id} at its maximum lifetime"
        )
    lab.expires_at = wanted
    lab.save(update_fields=["expires_at"])
    live.state().lab_expiry_set(str(lab.id), wanted.timestamp())
    return lab


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


def labs_claim(*, session_key: str, user_id: int) -> int:
    """A person who signs in keeps the labs they started anonymously in this browser."""
    if not session_key:
        return 0
    return Lab.objects.filter(owner__isnull=True, session_key=session_key).update(
        owner_id=user_id, session_key=""
    )


# -- instances ------------------------------------------------------------------------------


def _instance_create(*, lab: Lab, image: Image) -> Instance:
    last = lab.instances.aggregate(n=Max("number"))["n"] or 0
    return Instance.objects.create(
        lab=lab,
        number=last + 1,
        name=f"node{last + 1}",
        image=image,
        image_reference=image.reference,
    )


def _instance_launch(*, instance: Instance) -> None:
    lab_id = str(instance.lab_id)
    spec = engine.InstanceSpec(
        image=instance.image_reference,
        name=f"pg-{instance.lab_id.hex}-{instance.number}",
        hostname=instance.name,
        shell=tuple(shlex.split(instance.image.shell)),
        labels={
            engine.LABEL_SITE: "1",
            engine.LABEL_LAB: lab_id,
            engine.LABEL_INSTANCE: str(instance.id),
        },
        memory=settings.INSTANCE_MEMORY,
        cpus=settings.INSTANCE_CPUS,
        pids=settings.INSTANCE_PIDS,
    )
    try:
        state = engine.blocking(engine.engine().launch)(spec)
    except ApplicationError:
        instance.status = InstanceStatus.FAILED
        instance.save(update_fields=["status"])
        raise
    instance.container_id = state.container_id
    instance.status = InstanceStatus.RUNNING
    instance.save(update_fields=["container_id", "status"])
    live.state().instance_status_set(instance.id, instance.status)


def _instance_discard(*, instance: Instance) -> None:
    if instance.container_id:
        engine.blocking(engine.engine().remove)(instance.container_id)
    instance.status = InstanceStatus.REMOVED
    instance.removed_at = timezone.now()
    instance.save(update_fields=["status", "removed_at"])
    _notify(instance_group(instance.id), {"type": "instance.removed"})


def instance_add(*, lab: Lab, owner: Owner, image_slug: str) -> Instance:
    if not lab.is_active:
        raise ApplicationError("This lab has ended.", f"add to ended lab {lab.id}")
    limit = limits_for(owner).instances
    if selectors.instances_active(lab=lab).count() >= limit:
        raise LimitReached(
            f"A lab may have {limit} instances at most.", f"instance limit {limit} of {lab.id}"
        )
    image = image_get(slug=image_slug)
    try:
        _admit(ticket=None)
    except AtCapacity:
        raise ApplicationError(
            "The playground is full right now: try adding an instance in a few minutes.",
            "host at capacity",
            temporary=True,
        ) from None
    with transaction.atomic():
        instance = _instance_create(lab=lab, image=image)
    _instance_launch(instance=instance)
    return instance


def instance_restart(*, lab: Lab, instance: Instance) -> Instance:
    if not lab.is_active or not instance.is_active or not instance.container_id:
        raise ApplicationError("This instance cannot be restarted.", f"restart {instance}")
    state = engine.blocking(engine.engine().restart)(instance.container_id)
    instance.status = InstanceStatus.RUNNING if state.status == "running" else state.status
    instance.save(update_fields=["status"])
    live.state().instance_status_set(instance.id, instance.status)
    return instance


def instance_remove(*, lab: Lab, instance: Instance) -> None:
    if instance.status == InstanceStatus.REMOVED:
        return
    _instance_discard(instance=instance)
    live.state().lab_forget("-", [instance.id])


# -- reconciliation -------------------------------------------------------------------------

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
    counts = {"instances": 0, "labs": 0, "orphans": 0, "lost": 0}
    for lab in Lab.objects.filter(ended_at__isnull=True).prefetch_related("instances"):
        state.lab_expiry_set(str(lab.id), lab.expires_at.timestamp())
        counts["labs"] += 1
        for instance in lab.instances.all():
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
        logger.warning("removing orphaned container %s", container_id[:12])
        engine.blocking(engine.engine().remove)(container_id)
        counts["orphans"] += 1
    return counts
