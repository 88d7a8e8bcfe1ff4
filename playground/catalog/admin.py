from __future__ import annotations

from django.contrib import admin

from playground.catalog.models import Image


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin[Image]):
    list_display = ("slug", "reference", "title", "enabled", "position")
    list_editable = ("enabled", "position")
