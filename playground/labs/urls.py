from __future__ import annotations

from django.urls import path

from playground.labs import views

app_name = "labs"

urlpatterns = [
    path("new", views.lab_new, name="new"),
    path("queue/", views.queue, name="queue"),
    path("queue/status", views.queue_status, name="queue_status"),
    path("<uuid:lab_id>/", views.lab_detail, name="detail"),
    path("<uuid:lab_id>/status", views.lab_status, name="status"),
    path("<uuid:lab_id>/extend", views.lab_extend, name="extend"),
    path("<uuid:lab_id>/end", views.lab_end, name="end"),
    path("<uuid:lab_id>/instances/", views.instance_add, name="instance_add"),
    path(
        "<uuid:lab_id>/instances/<int:instance_id>/restart",
        views.instance_restart,
        name="instance_restart",
    ),
    path(
        "<uuid:lab_id>/instances/<int:instance_id>/remove",
        views.instance_remove,
        name="instance_remove",
    ),
]
