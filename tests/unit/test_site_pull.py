"""Images that are not on the host: the instance waits ("pulling") while the ``instance_pull``
task (called as a plain function) pulls through the fake engine, reports per-layer progress
to the live state and the channel layer, and launches it; failures are kept and told. Also:
the adapter's image check, the progress throttle, and launches handed to the server's loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from playground import background, engine
from playground.engine import FakeEngine, PullStep, familiar
from playground.errors import ApplicationError
from playground.labs import selectors, services, tasks
from playground.labs.models import EndReason, Instance, InstanceStatus, Lab
from playground.labs.policy import Owner
from playground.labs.progress import PullReport
from playground.live import MemoryLiveState
from runtime.errors import RegistryUnreachable

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_engine", "memory_live")]

ANON = Owner(user_id=None, session_key="p" * 32)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The instance ids ``instance_pull`` was enqueued for (instead of a broker)."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.instance_pull, "delay", ids.append)
    return ids


@pytest.fixture
def debian_remote(fake_engine: FakeEngine) -> FakeEngine:
    fake_engine.images.discard("debian:bookworm")
    fake_engine.registry["debian:bookworm"] = (5 << 20, 2048)
    return fake_engine


def start_pulling(capture: Any, image: str = "debian") -> Instance:
    with capture(execute=True):
        lab = services.lab_start(owner=ANON, image_slug=image, client_address="10.0.0.9")
    return lab.instances.get()


def messages_of(channel: str) -> list[dict[str, Any]]:
    layer = get_channel_layer()
    assert layer is not None
    received: list[dict[str, Any]] = []

    async def drain() -> None:
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(channel), 0.05))
            except TimeoutError:
                return

    async_to_sync(drain)()
    return received


def listen(group: str) -> str:
    layer = get_channel_layer()
    assert layer is not None
    channel: str = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def test_references_are_compared_in_their_familiar_form() -> None:
    assert familiar("busybox") == "busybox:latest"
    assert familiar("docker.io/library/debian:12") == "debian:12"
    assert familiar("docker.io/me/app") == "me/app:latest"
    assert familiar("127.0.0.1:5000/play/busybox") == "127.0.0.1:5000/play/busybox:latest"
    assert familiar("busybox@sha256:abc") == "busybox@sha256:abc"


@pytest.mark.usefixtures("debian_remote")
def test_an_image_that_is_not_here_is_pulled_by_a_task_then_launched(
    fake_engine: FakeEngine,
    memory_live: MemoryLiveState,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    instance = start_pulling(django_capture_on_commit_callbacks)
    assert instance.status == InstanceStatus.PULLING
    assert enqueued == [instance.id]
    assert not fake_engine.by_id  # nothing launched before the image is here
    channel = listen(services.instance_group(instance.id))

    tasks.instance_pull(instance.id)

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING
    assert fake_engine.by_id[instance.container_id].spec.image == "debian:bookworm"
    progress = memory_live.pull_progress(instance.id)
    assert progress is not None and progress["pulled"] is True
    assert progress["reference"] == "debian:bookworm"
    assert [(layer["phase"], layer["current"]) for layer in progress["layers"]] == [
        ("done", 5 << 20),
        ("done", 2048),
    ]
    sent = messages_of(channel)
    assert [m["type"] for m in sent] == ["instance.pull", "instance.pull", "instance.ready"]
    assert sent[0]["progress"]["layers"][0]["phase"] == "waiting"
    assert sent[-1]["container_id"] == instance.container_id


@pytest.mark.usefixtures("debian_remote")
def test_the_task_is_idempotent(
    fake_engine: FakeEngine, enqueued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    instance = start_pulling(django_capture_on_commit_callbacks)
    tasks.instance_pull(instance.id)
    tasks.instance_pull(instance.id)
    assert [op for op, _ in fake_engine.calls].count("pull") == 1
    assert len(fake_engine.by_id) == 1


def test_an_image_the_registry_lacks_ends_the_new_lab_and_says_why(
    fake_engine: FakeEngine,
    memory_live: MemoryLiveState,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    fake_engine.images.discard("debian:bookworm")
    instance = start_pulling(django_capture_on_commit_callbacks)
    tasks.instance_pull(instance.id)
    lab = Lab.objects.get()
    assert lab.ended_reason == EndReason.FAILED
    assert selectors.lab_failures(lab=lab) == [("node1", "The image registry has no such image.")]
    progress = memory_live.pull_progress(instance.id)
    assert progress is None  # the ended lab's live state is forgotten
    assert not fake_engine.by_id


@pytest.mark.usefixtures("debian_remote")
def test_temporary_failures_are_retried_and_told_while_waiting(
    fake_engine: FakeEngine,
    memory_live: MemoryLiveState,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    fake_engine.pull_error = RegistryUnreachable(
        "registry.example", "ECONNREFUSED", "connection refused", temporary=True
    )
    instance = start_pulling(django_capture_on_commit_callbacks)
    with pytest.raises(ApplicationError) as raised:  # a direct call re-raises what it retries
        tasks.instance_pull(instance.id)
    assert raised.value.temporary
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.PULLING
    progress = memory_live.pull_progress(instance.id)
    assert progress is not None
    assert progress["note"] == "The image registry could not be reached. Try again later."
    assert progress["layers"][0]["phase"] == "downloading"

    fake_engine.pull_error = None  # the next try succeeds
    tasks.instance_pull(instance.id)
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING


@pytest.mark.usefixtures("debian_remote")
def test_the_last_try_of_a_temporary_failure_fails_the_instance(
    fake_engine: FakeEngine, enqueued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    fake_engine.pull_error = RegistryUnreachable(
        "r.example", "ETIMEDOUT", "timeout", temporary=True
    )
    lab = services.lab_start(owner=ANON, image_slug="busybox", client_address="10.0.0.9")
    with django_capture_on_commit_callbacks(execute=True):
        second = services.instance_add(lab=lab, owner=ANON, image_slug="debian")
    services.instance_pull(instance_id=second.id, may_retry=False)
    second.refresh_from_db()
    assert second.status == InstanceStatus.FAILED
    assert second.error == "The image registry could not be reached. Try again later."
    lab.refresh_from_db()
    assert lab.is_active  # only a lab's first instance failing ends it
    assert [i.name for i in selectors.instances_shown(lab=lab)] == ["node1", "node2"]
    assert selectors.lab_status(lab=lab)["instances"][1]["error"] == second.error


@pytest.mark.usefixtures("debian_remote")
def test_an_instance_removed_while_pulling_is_not_launched(
    fake_engine: FakeEngine, enqueued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    lab = services.lab_start(owner=ANON, image_slug="busybox", client_address="10.0.0.9")
    with django_capture_on_commit_callbacks(execute=True):
        second = services.instance_add(lab=lab, owner=ANON, image_slug="debian")
    services.instance_remove(lab=lab, instance=second)
    tasks.instance_pull(second.id)
    assert ("pull", "debian:bookworm") not in fake_engine.calls
    assert len(fake_engine.by_id) == 1


def test_the_progress_is_sent_at_most_every_interval_and_at_the_end() -> None:
    now = [0.0]
    report = PullReport("x:1", clock=lambda: now[0])
    assert report.take(PullStep("a", "waiting", 0, 10))
    assert not report.take(PullStep("a", "downloading", 5, 10))
    now[0] = 0.3
    assert report.take(PullStep("a", "downloading", 10, 10))
    assert not report.take(PullStep("a", "done", 10, 10))
    assert report.take(PullStep("f", "pulled", image_id="sha256:f"))
    assert report.snapshot() == {
        "reference": "x:1",
        "layers": [{"id": "a", "phase": "done", "current": 10, "total": 10}],
        "pulled": True,
        "note": "",
    }


def test_a_present_image_is_remembered_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine.RuntimeEngine("/nonexistent.sock")
    listings: list[int] = []

    async def images() -> list[dict[str, Any]]:
        listings.append(1)
        return [{"id": "sha256:1", "repo_tags": ["busybox:latest"], "created": "", "size": 1}]

    monkeypatch.setattr(real.client, "images", images)
    present = engine.blocking(real.image_present)
    assert present("busybox") and present("busybox:latest")
    assert len(listings) == 1
    assert not present("alpine:3") and not present("alpine:3")
    assert len(listings) == 3  # a "no" is always asked again


def test_reconciliation_spares_launches_under_way_and_fails_stuck_ones(
    fake_engine: FakeEngine,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    lab = services.lab_start(owner=ANON, image_slug="busybox", client_address="10.0.0.9")
    fresh = Instance.objects.create(
        lab=lab, number=2, name="node2", image=lab.instances.get().image,
        image_reference="busybox:latest", status=InstanceStatus.STARTING,
    )  # fmt: skip
    # Its container exists, but the database does not know yet: not an orphan.
    asyncio.run(fake_engine.launch(services._instance_spec(fresh)))
    stuck = Instance.objects.create(
        lab=lab, number=3, name="node3", image=fresh.image, image_reference="alpine:3",
        status=InstanceStatus.PULLING, created=timezone.now() - timedelta(hours=2),
    )  # fmt: skip
    counts = services.live_state_rebuild()
    assert counts["orphans"] == 0 and counts["stuck"] == 1
    assert len(fake_engine.by_id) == 2
    stuck.refresh_from_db()
    assert stuck.status == InstanceStatus.FAILED
    assert stuck.error == "This instance did not start in time. Remove it and add another."


# -- launching on the server's loop ---------------------------------------------------------


@pytest.fixture
def server_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread, noted as the ASGI server's."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    asyncio.run_coroutine_threadsafe(
        background.remember_loop(app)({"type": "http"}, None, None),  # type: ignore[arg-type]
        loop,
    ).result(5)
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
    background._loop = None


def test_work_runs_on_the_servers_loop_and_its_errors_are_logged(
    server_loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()
    ran_on: list[asyncio.AbstractEventLoop] = []

    async def work() -> None:
        ran_on.append(asyncio.get_running_loop())
        done.set()
        raise ApplicationError("no", "the work failed on purpose")

    assert background.available()
    background.soon(work, "test work")
    assert done.wait(5)
    assert ran_on == [server_loop]
    for _ in range(50):
        if "the work failed on purpose" in caplog.text:
            break
        threading.Event().wait(0.02)
    assert "test work: the work failed on purpose" in caplog.text


def test_without_a_server_loop_the_caller_does_the_work(fake_engine: FakeEngine) -> None:
    assert not background.available()
    lab = services.lab_start(
        owner=ANON, image_slug="busybox", client_address="10.0.0.9", concurrently=True
    )
    assert lab.instances.get().status == InstanceStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_launch_answers_first_and_starts_the_container_soon(
    server_loop: asyncio.AbstractEventLoop, fake_engine: FakeEngine, catalog: None
) -> None:
    fake_engine.delay = 0.2
    lab = services.lab_start(
        owner=ANON, image_slug="busybox", client_address="10.0.0.9", concurrently=True
    )
    instance = lab.instances.get()
    assert instance.status == InstanceStatus.STARTING  # answered before the engine did
    for _ in range(100):
        instance.refresh_from_db()
        if instance.status != InstanceStatus.STARTING:
            break
        threading.Event().wait(0.05)
    assert instance.status == InstanceStatus.RUNNING
    assert instance.container_id in fake_engine.by_id


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_launch_that_fails_ends_the_new_lab_and_keeps_why(
    server_loop: asyncio.AbstractEventLoop, fake_engine: FakeEngine, catalog: None
) -> None:
    from runtime.errors import DaemonUnavailable

    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    fake_engine.fail_ops = {"launch"}
    lab = services.lab_start(
        owner=ANON, image_slug="busybox", client_address="10.0.0.9", concurrently=True
    )
    for _ in range(100):
        lab.refresh_from_db()
        if not lab.is_active:
            break
        threading.Event().wait(0.05)
    assert lab.ended_reason == EndReason.FAILED
    ((name, why),) = selectors.lab_failures(lab=lab)
    assert name == "node1" and why.startswith("The container engine is not answering")
