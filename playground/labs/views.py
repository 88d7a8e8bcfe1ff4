"""Lab pages and actions: parse the request, call one service or selector, shape the answer.

Every view that names a lab checks that the requester owns it (403 otherwise); every form is
a POST with a CSRF token. Errors are shown as sentences, never as tracebacks.

Starting a lab or adding an instance answers before the engine has launched the container
(``concurrently``): the redirect, the lab page and the terminal's WebSocket overlap the
launch, and the terminal waits for it; a failure is told on the lab's page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from playground.catalog.selectors import image_list
from playground.errors import ApplicationError, AtCapacity, NotFound, PermissionDenied
from playground.labs import selectors, services
from playground.labs.models import EndReason
from playground.labs.policy import Owner, limits_for

logger = logging.getLogger(__name__)
P = ParamSpec("P")

QUEUE_SESSION_KEY = "playground.queue"


def owner_of(request: HttpRequest, *, create_session: bool = False) -> Owner:
    if request.user.is_authenticated:
        return Owner(user_id=request.user.pk, session_key=None)
    if create_session and not request.session.session_key:
        request.session.save()
    return Owner(user_id=None, session_key=request.session.session_key)


def client_address(request: HttpRequest) -> str:
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return str(forwarded).split(",")[-1].strip()
    return str(request.META.get("REMOTE_ADDR", "unknown"))


def shows_errors(view: Callable[P, HttpResponse]) -> Callable[P, HttpResponse]:
    """403 and 404 pages for ownership and missing things; other application errors become a
    message on the page the person came from."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        request = args[0]
        assert isinstance(request, HttpRequest)
        try:
            return view(*args, **kwargs)
        except PermissionDenied as exc:
            logger.info("%s: %s", request.path, exc.log_message)
            return render(request, "errors/403.html", status=403)
        except NotFound:
            return render(request, "errors/404.html", status=404)
        except ApplicationError as exc:
            logger.warning("%s: %s", request.path, exc.log_message)
            if request.headers.get("Accept", "").startswith("application/json"):
                return JsonResponse({"error": exc.user_message}, status=409)
            messages.error(request, exc.user_message)
            back = request.META.get("HTTP_REFERER", "")
            if not url_has_allowed_host_and_scheme(back, {request.get_host()}):
                back = reverse("home")
            return redirect(back)

    return wrapper


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    owner = owner_of(request)
    return render(
        request,
        "home.html",
        {
            "images": image_list(),
            "active_labs": list(selectors.labs_active(owner=owner)),
            "recent_labs": selectors.labs_recent(owner=owner),
            "limits": limits_for(owner),
        },
    )


@require_http_methods(["GET", "POST"])
@shows_errors
def lab_new(request: HttpRequest) -> HttpResponse:
    """GET (a shared link, ``/labs/new?image=busybox``) asks to confirm; POST starts."""
    if request.method == "GET":
        slug = request.GET.get("image", "")
        return render(request, "labs/new.html", {"images": image_list(), "selected": slug})
    owner = owner_of(request, create_session=True)
    slug = request.POST.get("image", "")
    try:
        lab = services.lab_start(
            owner=owner,
            image_slug=slug,
            client_address=client_address(request),
            concurrently=True,
        )
    except AtCapacity:
        request.session[QUEUE_SESSION_KEY] = {"ticket": uuid.uuid4().hex, "image": slug}
        return redirect("labs:queue")
    return redirect("labs:detail", lab_id=lab.id)


@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    if QUEUE_SESSION_KEY not in request.session:
        return redirect("home")
    return render(request, "labs/queue.html", {"image": request.session[QUEUE_SESSION_KEY]})


@require_GET
def queue_status(request: HttpRequest) -> JsonResponse:
    """Polled by the queue page: the place in the queue, or the new lab once admitted."""
    waiting = request.session.get(QUEUE_SESSION_KEY)
    if not waiting:
        return JsonResponse({"error": "You are not waiting for a lab."}, status=404)
    owner = owner_of(request, create_session=True)
    try:
        lab = services.lab_start(
            owner=owner,
            image_slug=waiting["image"],
            client_address=client_address(request),
            ticket=waiting["ticket"],
            concurrently=True,
        )
    except AtCapacity as exc:
        return JsonResponse({"position": exc.position})
    except ApplicationError as exc:
        del request.session[QUEUE_SESSION_KEY]
        return JsonResponse({"error": exc.user_message}, status=409)
    del request.session[QUEUE_SESSION_KEY]
    return JsonResponse({"url": reverse("labs:detail", kwargs={"lab_id": lab.id})})


@require_GET
@shows_errors
def lab_detail(request: HttpRequest, lab_id: uuid.UUID) -> HttpResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    if not lab.is_active:
        failures = selectors.lab_failures(lab=lab)
        return render(request, "labs/ended.html", {"lab": lab, "failures": failures})
    instances = list(selectors.instances_shown(lab=lab))
    active = [i for i in instances if i.is_active]
    config: dict[str, Any] = {
        "lab": str(lab.id),
        "statusUrl": reverse("labs:status", kwargs={"lab_id": lab.id}),
        "warnSeconds": int(settings.WARN_BEFORE_END.total_seconds()),
        "instances": [
            {
                "id": i.id,
                "name": i.name,
                "status": i.status,
                "ws": f"/ws/labs/{lab.id}/instances/{i.id}/terminal/",
            }
            for i in instances
        ],
    }
    owner = owner_of(request)
    return render(
        request,
        "labs/lab.html",
        {
            "lab": lab,
            "instances": instances,
            "images": image_list(),
            "config": config,
            "can_add": len(active) < limits_for(owner).instances,
        },
    )


@require_GET
@shows_errors
def lab_status(request: HttpRequest, lab_id: uuid.UUID) -> JsonResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    return JsonResponse(selectors.lab_status(lab=lab))


@require_POST
@shows_errors
def lab_extend(request: HttpRequest, lab_id: uuid.UUID) -> HttpResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    services.lab_extend(lab=lab)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(selectors.lab_status(lab=lab))
    return redirect("labs:detail", lab_id=lab.id)


@require_POST
@shows_errors
def lab_end(request: HttpRequest, lab_id: uuid.UUID) -> HttpResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    services.lab_end(lab=lab, reason=EndReason.USER)
    return redirect("labs:detail", lab_id=lab.id)


@require_POST
@shows_errors
def instance_add(request: HttpRequest, lab_id: uuid.UUID) -> HttpResponse:
    owner = owner_of(request)
    lab = selectors.lab_get(lab_id=lab_id, owner=owner)
    instance = services.instance_add(
        lab=lab, owner=owner, image_slug=request.POST.get("image", ""), concurrently=True
    )
    return redirect(reverse("labs:detail", kwargs={"lab_id": lab.id}) + f"#{instance.name}")


@require_POST
@shows_errors
def instance_restart(request: HttpRequest, lab_id: uuid.UUID, instance_id: int) -> HttpResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    instance = selectors.instance_get(lab=lab, instance_id=instance_id)
    services.instance_restart(lab=lab, instance=instance)
    return redirect(reverse("labs:detail", kwargs={"lab_id": lab.id}) + f"#{instance.name}")


@require_POST
@shows_errors
def instance_remove(request: HttpRequest, lab_id: uuid.UUID, instance_id: int) -> HttpResponse:
    lab = selectors.lab_get(lab_id=lab_id, owner=owner_of(request))
    instance = selectors.instance_get(lab=lab, instance_id=instance_id)
    services.instance_remove(lab=lab, instance=instance)
    return redirect("labs:detail", lab_id=lab.id)
