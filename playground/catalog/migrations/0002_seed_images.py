"""The images every new site offers: busybox and Debian 12."""

from __future__ import annotations

from typing import Any

from django.db import migrations

SEED = [
    {
        "slug": "busybox",
        "reference": "busybox:latest",
        "title": "BusyBox",
        "description": "A tiny Linux userland: starts in an instant.",
        "shell": "/bin/sh",
        "position": 0,
    },
    {
        "slug": "debian",
        "reference": "debian:bookworm",
        "title": "Debian 12",
        "description": "Debian bookworm with bash.",
        "shell": "/bin/bash",
        "position": 1,
    },
]


def seed(apps: Any, schema_editor: Any) -> None:
    image = apps.get_model("catalog", "Image")
    for entry in SEED:
        image.objects.update_or_create(slug=entry["slug"], defaults=entry)


def unseed(apps: Any, schema_editor: Any) -> None:
    apps.get_model("catalog", "Image").objects.filter(slug__in=[e["slug"] for e in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
