from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path

from playground.accounts import views

urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
]
