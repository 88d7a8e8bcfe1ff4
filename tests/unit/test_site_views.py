"""The site's pages through Django's test client: starting labs, ownership (403 for every view
of someone else's lab), CSRF, the queue and the ended page."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from playground.engine import FakeEngine
from playground.labs.models import EndReason, Lab
from playground.labs.services import lab_end

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_engine", "memory_live")]


def start_lab(client: Client, image: str = "busybox") -> Lab:
    response = client.post("/labs/new", {"image": image})
    assert response.status_code == 302, response.content
    match = re.fullmatch(r"/labs/([0-9a-f-]{36})/", response["Location"])
    assert match, response["Location"]
    return Lab.objects.get(id=match[1])


def test_the_home_page_offers_the_catalog(client: Client) -> None:
    page = client.get("/").content.decode()
    assert 'value="busybox"' in page
    assert 'value="debian"' in page
    assert "csrfmiddlewaretoken" in page


def test_starting_a_lab_leads_to_its_terminal_page(client: Client) -> None:
    lab = start_lab(client)
    page = client.get(f"/labs/{lab.id}/").content.decode()
    instance = lab.instances.get()
    assert f"/ws/labs/{lab.id}/instances/{instance.id}/terminal/" in page
    assert "vendor/xterm/xterm.js" in page
    assert "node1" in page


def test_a_shared_link_asks_before_starting(client: Client) -> None:
    page = client.get("/labs/new?image=debian").content.decode()
    assert '<option value="debian" selected>' in page
    assert not Lab.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/labs/{lab}/"),
        ("get", "/labs/{lab}/status"),
        ("post", "/labs/{lab}/extend"),
        ("post", "/labs/{lab}/end"),
        ("post", "/labs/{lab}/instances/"),
        ("post", "/labs/{lab}/instances/{instance}/restart"),
        ("post", "/labs/{lab}/instances/{instance}/remove"),
    ],
)
def test_every_view_of_a_lab_is_forbidden_to_others(method: str, path: str) -> None:
    owner = Client()
    lab = start_lab(owner)
    url = path.format(lab=lab.id, instance=lab.instances.get().id)
    User.objects.create_user("eve", password="pw")
    signed_in = Client()
    signed_in.login(username="eve", password="pw")
    for stranger in (Client(), signed_in):
        response = getattr(stranger, method)(url, {"image": "busybox"})
        assert response.status_code == 403, (url, response.status_code)
        assert b"not yours" in response.content
    lab.refresh_from_db()
    assert lab.is_active
    assert lab.instances.count() == 1


def test_forms_need_a_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post("/labs/new", {"image": "busybox"}).status_code == 403
    assert not Lab.objects.exists()


def test_an_ended_lab_says_why_it_ended(client: Client) -> None:
    lab = start_lab(client)
    lab_end(lab=lab, reason=EndReason.EXPIRED)
    page = client.get(f"/labs/{lab.id}/").content.decode()
    assert "This lab has ended" in page
    assert "its lifetime ran out" in page


def test_ending_a_lab_removes_its_containers(client: Client, fake_engine: FakeEngine) -> None:
    lab = start_lab(client)
    client.post(f"/labs/{lab.id}/end")
    lab.refresh_from_db()
    assert lab.ended_reason == EndReason.USER
    assert not fake_engine.by_id


def test_adding_an_instance_opens_its_tab(client: Client) -> None:
    lab = start_lab(client)
    response = client.post(f"/labs/{lab.id}/instances/", {"image": "debian"})
    assert response["Location"].endswith("#node2")
    assert lab.instances.count() == 2


def test_errors_are_sentences_not_tracebacks(client: Client, fake_engine: FakeEngine) -> None:
    from runtime.errors import DaemonUnavailable

    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    response = client.post("/labs/new", {"image": "busybox"}, follow=True)
    page = response.content.decode()
    assert "The container engine is not answering" in page
    assert "Traceback" not in page


def test_a_lab_that_could_not_be_started_says_why_on_its_page(
    client: Client, fake_engine: FakeEngine
) -> None:
    from runtime.errors import DaemonUnavailable

    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    fake_engine.fail_ops = {"launch"}
    client.post("/labs/new", {"image": "busybox"})
    lab = Lab.objects.get()
    page = client.get(f"/labs/{lab.id}/").content.decode()
    assert "it could not be started" in page
    assert "node1: The container engine is not answering" in page


def test_a_failed_instance_keeps_its_tab_with_the_reason(
    client: Client, fake_engine: FakeEngine
) -> None:
    from runtime.errors import InvalidSpec

    lab = start_lab(client)
    fake_engine.fail = InvalidSpec("process.args", "no such file")
    fake_engine.fail_ops = {"launch"}
    client.post(f"/labs/{lab.id}/instances/", {"image": "busybox"})
    page = client.get(f"/labs/{lab.id}/").content.decode()
    assert 'data-name="node2"' in page
    assert "The container engine could not do that." in page
    assert '"status": "failed"' in page


def test_an_image_that_is_not_here_shows_a_pulling_instance(
    client: Client, fake_engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playground.labs import tasks

    monkeypatch.setattr(tasks.instance_pull, "delay", lambda instance_id: None)
    fake_engine.images.discard("debian:bookworm")
    lab = start_lab(client, "debian")
    page = client.get(f"/labs/{lab.id}/").content.decode()
    assert '"status": "pulling"' in page
    assert 'class="pull"' in page
    assert not fake_engine.by_id


def test_the_status_is_json_for_the_page(client: Client) -> None:
    lab = start_lab(client)
    status = client.get(f"/labs/{lab.id}/status").json()
    assert status["active"] is True
    assert status["instances"][0]["name"] == "node1"


def test_extend_answers_json_to_the_page(client: Client) -> None:
    lab = start_lab(client)
    before = client.get(f"/labs/{lab.id}/status").json()["remaining_seconds"]
    after = client.post(f"/labs/{lab.id}/extend", HTTP_ACCEPT="application/json").json()
    assert after["remaining_seconds"] >= before + 3590


@override_settings(CAPACITY=1)
def test_a_full_host_puts_people_in_a_queue_and_shows_their_place() -> None:
    first = Client()
    lab = start_lab(first)
    second = Client()
    response = second.post("/labs/new", {"image": "busybox"})
    assert response["Location"] == "/labs/queue/"
    assert "place in the queue" in second.get("/labs/queue/").content.decode()
    assert second.get("/labs/queue/status").json() == {"position": 1}
    first.post(f"/labs/{lab.id}/end")
    admitted = second.get("/labs/queue/status").json()
    assert re.fullmatch(r"/labs/[0-9a-f-]{36}/", admitted["url"])


def test_signing_up_keeps_the_lab_started_anonymously(client: Client) -> None:
    lab = start_lab(client)
    response = client.post(
        "/accounts/signup/",
        {"username": "grace", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
    )
    assert response.status_code == 302
    lab.refresh_from_db()
    assert lab.owner is not None and lab.owner.username == "grace"
    assert client.get(f"/labs/{lab.id}/").status_code == 200


def test_signing_in_keeps_the_lab_started_anonymously(client: Client) -> None:
    User.objects.create_user("ada", password="a-long-pass-phrase")
    lab = start_lab(client)
    client.post("/accounts/login/", {"username": "ada", "password": "a-long-pass-phrase"})
    lab.refresh_from_db()
    assert lab.owner is not None and lab.owner.username == "ada"


def test_session_cookies_are_http_only_and_same_site(client: Client) -> None:
    start_lab(client)
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
