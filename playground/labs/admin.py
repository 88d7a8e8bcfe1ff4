from __future__ import annotations

from django.contrib import admin

from playground.labs.models import Instance, Lab


class InstanceInline(admin.TabularInline[Instance, Lab]):
    model = Instance
    extra = 0
    readonly_fields = ("number", "name", "image", "container_id", "status", "created")


@admin.register(Lab)
class LabAdmin(admin.ModelAdmin[Lab]):
    list_display = ("id", "owner", "created", "expires_at", "ended_at", "ended_reason")
    list_filter = ("ended_reason",)
    inlines = (InstanceInline,)
