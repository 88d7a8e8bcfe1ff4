"""Sign-up and sign-in. Labs started anonymously in this browser go with the person who
signs in (``labs.services.labs_claim``)."""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from playground.labs.services import labs_claim


class SignInView(LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        anonymous_session = self.request.session.session_key or ""
        labs_claim(session_key=anonymous_session, user_id=form.get_user().pk)
        return super().form_valid(form)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form: UserCreationForm[User] = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        anonymous_session = request.session.session_key or ""
        user = form.save()
        labs_claim(session_key=anonymous_session, user_id=user.pk)
        login(request, user)
        return redirect("home")
    return render(request, "accounts/signup.html", {"form": form})
