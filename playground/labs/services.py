"""Writes: starting, extending and ending labs; adding, restarting and removing instances;
pulling their images; expiring labs and rebuilding the live state. Engine calls go through
``playground.engine``.

The database row of an instance is committed before its container is launched, so that
reconciliation can always tell the site's containers from orphans. An instance whose image
is on the host is launched straight away (by a view: concurrently, on the server's loop, so
the page loads while the engine works); one whose image is not is "pulling" until the
``instance_pull`` Celery task has pulled it, reporting progress through Redis and the
channel layer, and launched it. Either way the instance's terminals are told when it is
ready ("instance.ready") or why it failed ("instance.failed"), and the reason is kept on the
instance for the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from kombu.exceptions import OperationalError

from playground import background, engine, live
from playground.catalog.models import Image
from playground.catalog.selectors import image_get
from playground.errors import ApplicationError, AtCapacity, LimitReached
from playground.labs import selectors
from playground.labs.models import (
    PENDING_STATUSES,
    EndReason,
    Instance,
    InstanceStatus,
    Lab,
)
from playground.labs.policy import Owner, lab_owner, limits_for
from playground.labs.progress import PullReport

logger = logging.getLogger(__name__)

RATE_WINDOW = 3600
# Reconciliation fails instances still waiting after this long (their launch or pull died).
STARTING_GRACE = timedelta(minutes=2)
PULLING_GRACE = timedelta(hours=1)


def lab_group(lab_id: uuid.UUID | str) -> str:
    return f"lab-{lab_id}"


def instance_group(instance_id: int) -> str:
    return f"instance-{instance_id}"


def instance_ready_key(instance_id: int) -> str:
    """What a terminal of this process ``background.expect``s: the container's id."""
    return f"instance-ready-{instance_id}"


async def _tell(group: str, message: dict[str, Any]) -> None:
    """Tell the terminals of a lab or instance; they end their own connections. A missed
    notice is healed anyway: attach streams end, and waiting terminals ask again."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.warning("could not notify %s of %s", group, message.get("type"), exc_info=True)


def _notify(group: str, message: dict[str, Any]) -> None:
    async_to_sync(_tell)(group, message)


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
    *,
    owner: Owner,
    image_slug: str,
    client_address: str,
    ticket: str | None = None,
    concurrently: bool = False,
) -> Lab:
    """A new lab with one instance of ``image_slug``, launched at once: before returning, or
    ``concurrently`` (then a failure is told on the lab's page, not raised), or after its
    image has been pulled."""
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
    status = _first_status(image)
    now = timezone.now()
    with transaction.atomic():
        lab = Lab.objects.create(
            owner_id=owner.user_id,
            session_key="" if owner.user_id else (owner.session_key or ""),
            created=now,
            expires_at=now + limits.lifetime,
            max_expires_at=now + limits.max_lifetime,
        )
        instance = _instance_create(lab=lab, image=image, status=status, first=True)
    _instance_begin(instance=instance, concurrently=concurrently)
    live.state().lab_expiry_set(str(lab.id), lab.expires_at.timestamp())
    logger.info("lab %s started: %s is %s", lab.id, instance.name, instance.status)
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


def _first_status(image: Image) -> InstanceStatus:
    """A new instance starts at once if its image is on the host, else it is pulled first."""
    present = engine.blocking(engine.engine().image_present)(image.reference)
    return InstanceStatus.STARTING if present else InstanceStatus.PULLING


def _instance_create(
    *, lab: Lab, image: Image, status: InstanceStatus, first: bool = False
) -> Instance:
    last = 0 if first else lab.instances.aggregate(n=Max("number"))["n"] or 0
    return Instance.objects.create(
        lab=lab,
        number=last + 1,
        name=f"node{last + 1}",
        image=image,
        image_reference=image.reference,
        status=status,
    )


def _instance_begin(*, instance: Instance, concurrently: bool) -> None:
    """Launch a committed instance: now, or ``concurrently`` on the server's loop (when the
    process has one); a pulling one is launched by the Celery task that pulls its image,
    enqueued on commit."""
    if instance.status == InstanceStatus.PULLING:
        transaction.on_commit(partial(_pull_enqueue, instance=instance))
    elif concurrently and background.available():
        background.soon(partial(_instance_launch_soon, instance), f"launch {instance}")
    else:
        _instance_launch(instance=instance)


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


def _instance_discard(*, instance: Instance) -> None:
    if instance.container_id:
        engine.blocking(engine.engine().remove)(instance.container_id)
    instance.status = InstanceStatus.REMOVED
    instance.removed_at = timezone.now()
    instance.save(update_fields=["status", "removed_at"])
    _notify(instance_group(instance.id), {"type": "instance.removed"})


def instance_add(
    *, lab: Lab, owner: Owner, image_slug: str, concurrently: bool = False
) -> Instance:
    """One more instance in ``lab``, launched as ``lab_start`` launches the first."""
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
    status = _first_status(image)
    with transaction.atomic():
        instance = _instance_create(lab=lab, image=image, status=status)
    _instance_begin(instance=instance, concurrently=concurrently)
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


# -- pulling --------------------------------------------------------------------------------


def _pull_enqueue(*, instance: Instance) -> None:
    from playground.labs import tasks  # tasks import this module

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
