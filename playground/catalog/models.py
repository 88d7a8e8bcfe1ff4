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

    class Meta:
        ordering = ("position", "slug")

    def __str__(self) -> str:
        return f"{self.title} ({self.reference})"
