"""Labs (a person's session of one to five instances) and their instances (containers)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class EndReason(models.TextChoices):
    EXPIRED = "expired", "its lifetime ran out"
    USER = "user", "you ended it"
    FAILED = "failed", "it could not be started"
    LOST = "lost", "its containers were lost by the host"
    ADMIN = "admin", "an administrator ended it"


class Lab(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="labs",
    )
    # Anonymous labs belong to the browser session that started them.
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_reason = models.CharField(max_length=16, choices=EndReason.choices, blank=True)

    class Meta:
        ordering = ("-created",)

    def __str__(self) -> str:
        return f"lab {self.id}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None


class InstanceStatus(models.TextChoices):
    PULLING = "pulling"  # its image is being pulled (a Celery task), then it starts
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    FAILED = "failed"
    LOST = "lost"
    REMOVED = "removed"


ACTIVE_STATUSES = (
    InstanceStatus.PULLING,
    InstanceStatus.STARTING,
    InstanceStatus.RUNNING,
    InstanceStatus.EXITED,
)
# Not launched yet: no container, or one the database does not know of yet.
PENDING_STATUSES = (InstanceStatus.PULLING, InstanceStatus.STARTING)


class Instance(models.Model):
    lab = models.ForeignKey(Lab, on_delete=models.CASCADE, related_name="instances")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=32)
    image = models.ForeignKey("catalog.Image", on_delete=models.PROTECT, related_name="+")
    image_reference = models.CharField(max_length=255)
    container_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(
        max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.STARTING
    )
    created = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)
    # Why it failed, as a sentence for its owner (an ApplicationError's user message).
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("lab", "number")
        constraints = [
            models.UniqueConstraint(fields=("lab", "number"), name="instance_number_per_lab")
        ]

    def __str__(self) -> str:
        return f"{self.name} of lab {self.lab_id}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
