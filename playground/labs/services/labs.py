"""Starting labs (limits, rate, admission, then the first instance), extending them, and
handing anonymous labs to the person who signs in.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from playground import live
from playground.catalog.selectors import image_get
from playground.errors import ApplicationError, LimitReached
from playground.labs import selectors
from playground.labs.models import Lab
from playground.labs.policy import Owner, limits_for
from playground.labs.services.admission import _admit, _check_rate
from playground.labs.services.instances import _first_status, _instance_begin, _instance_create

logger = logging.getLogger(__name__)


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


def labs_claim(*, session_key: str, user_id: int) -> int:
    """A person who signs in keeps the labs they started anonymously in this browser."""
    if not session_key:
        return 0
    return Lab.objects.filter(owner__isnull=True, session_key=session_key).update(
        owner_id=user_id, session_key=""
    )
