"""Reads of the image catalog."""

from __future__ import annotations

from django.db.models import QuerySet

from playground.catalog.models import Image
from playground.errors import ApplicationError


def image_list() -> QuerySet[Image]:
    return Image.objects.filter(enabled=True)


def image_get(*, slug: str) -> Image:
    image = Image.objects.filter(slug=slug, enabled=True).first()
    if image is None:
        raise ApplicationError(
            f"There is no image called {slug[:40]!r} here.", f"no image {slug!r}"
        )
    return image
