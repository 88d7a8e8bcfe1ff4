"""Who owns a lab, and how much each class of person may have (settings.LIMITS)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from playground.labs.models import Lab


@dataclass(frozen=True)
class Owner:
    """A signed-in user (``user_id``) or an anonymous browser session (``session_key``)."""

    user_id: int | None
    session_key: str | None

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None

    @property
    def user_class(self) -> str:
        return "anonymous" if self.is_anonymous else "user"

    def owns(self, lab: Lab) -> bool:
        if lab.owner_id is not None:
            return lab.owner_id == self.user_id
        return bool(self.session_key) and lab.session_key == self.session_key


@dataclass(frozen=True)
class Limits:
    labs: int
    instances: int
    lifetime: timedelta
    max_lifetime: timedelta
    # Each instance's resources (an image of the catalog may set its own).
    memory: int
    cpus: float
    pids: int


def limits_for(owner: Owner) -> Limits:
    return Limits(**settings.LIMITS[owner.user_class])


def lab_owner(lab: Lab) -> Owner:
    return Owner(user_id=lab.owner_id, session_key=lab.session_key or None)
