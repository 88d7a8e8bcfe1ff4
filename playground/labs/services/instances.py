"""Instances of a lab: creating one (its image on the host, or to be pulled first) and
beginning its launch or pull; adding, restarting and removing them.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models import Max

from playground import background, engine, live
from playground.catalog.models import Image
from playground.catalog.selectors import image_get
from playground.errors import ApplicationError, AtCapacity, LimitReached
from playground.labs import selectors
from playground.labs.models import Instance, InstanceStatus, Lab
from playground.labs.policy import Owner, limits_for
from playground.labs.services.admission import _admit
from playground.labs.services.ending import _instance_discard
from playground.labs.services.launch import _instance_launch, _instance_launch_soon
from playground.labs.services.pulling import _pull_enqueue


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
