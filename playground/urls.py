"""The site's URLs."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from playground.labs import views as lab_views

urlpatterns = [
    path("", lab_views.home, name="home"),
    path("labs/", include("playground.labs.urls")),
    path("accounts/", include("playground.accounts.urls")),
    path("admin/", admin.site.urls),
]

handler403 = "playground.views.forbidden"
handler404 = "playground.views.not_found"
handler500 = "playground.views.server_error"
