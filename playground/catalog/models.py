"""The images people may pick for an instance."""

from __future__ import annotations

from django.db import models


class Image(models.Model):
    slug = models.SlugField(unique=True, help_text="Used in links: /labs/new?image=<slug>")
    reference = models.CharField(max_length=255, help_text="The engine's image reference")
    title = models.CharField(max_length=100)
    description = models.CharField(max_length=255, blank=True)
    shell = models.CharField(max_length=100, default="/bin/sh")
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)
    # Resources of each instance of this image; empty: the user class's (settings.LIMITS).
    memory = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bytes of memory per instance; empty: the user class's"
    )
    cpus = models.FloatField(
        null=True, blank=True, help_text="CPUs per instance; empty: the user class's"
    )
    pids = models.PositiveIntegerField(
        null=True, blank=True, help_text="Processes per instance; empty: the user class's"
    )

    class Meta:
        ordering = ("position", "slug")

    def __str__(self) -> str:
        return f"{self.title} ({self.reference})"
