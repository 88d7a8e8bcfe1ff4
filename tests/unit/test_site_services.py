"""The labs' services and selectors against the test database, a fake engine and in-memory
live state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from playground.engine import LABEL_INSTANCE, LABEL_SITE, FakeEngine, InstanceSpec
from playground.errors import (
    ApplicationError,
    AtCapacity,
    LimitReached,
    NotFound,
    PermissionDenied,
)
from playground.labs import selectors, services
from playground.labs.models import EndReason, Instance, InstanceStatus, Lab
from playground.labs.policy import Owner
from playground.live import MemoryLiveState
from runtime.errors import DaemonUnavailable

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_engine", "memory_live")]

ANON = Owner(user_id=None, session_key="s" * 32)
OTHER_ANON = Owner(user_id=None, session_key="t" * 32)


@contextlib.contextmanager
def says(kind: type[ApplicationError], words: str) -> Iterator[None]:
    """The block raises ``kind`` and tells the person ``words``."""
    with pytest.raises(kind) as raised:
        yield
    assert words in raised.value.user_message, raised.value.user_message


def start(owner: Owner = ANON, image: str = "busybox", address: str = "10.0.0.1") -> Lab:
    return services.lab_start(owner=owner, image_slug=image, client_address=address)


@pytest.fixture
def user() -> User:
    return User.objects.create_user("ada", password="x")


def test_it_starts_a_lab_with_one_running_instance(fake_engine: FakeEngine) -> None:
    lab = start()
    instance = lab.instances.get()
    assert instance.status == InstanceStatus.RUNNING
    assert instance.name == "node1"
    container = fake_engine.by_id[instance.container_id]
    assert container.spec.image == "busybox:latest"
    assert container.spec.hostname == "node1"
    assert container.spec.labels[LABEL_INSTANCE] == str(instance.id)
    assert lab.expires_at - lab.created == timedelta(hours=4)


def test_an_anonymous_person_may_run_one_lab_at_a_time() -> None:
    start()
    with says(LimitReached, "as many as you may"):
        start()
    start(OTHER_ANON)


def test_a_signed_in_person_may_run_several_labs(user: User) -> None:
    owner = Owner(user_id=user.pk, session_key=None)
    for _ in range(3):
        start(owner)
    with pytest.raises(LimitReached):
        start(owner)


@override_settings(ANON_STARTS_PER_HOUR=2)
def test_anonymous_starts_are_rate_limited_per_address() -> None:
    for n in range(2):
        lab = start(Owner(user_id=None, session_key=f"k{n}"))
        services.lab_end(lab=lab, reason=EndReason.USER)
    with says(LimitReached, "Too many labs"):
        start(Owner(user_id=None, session_key="k9"))
    start(Owner(user_id=None, session_key="k9"), address="10.0.0.2")


@override_settings(CAPACITY=1)
def test_a_full_host_queues_starts_and_admits_them_in_order(memory_live: MemoryLiveState) -> None:
    first = start()
    with pytest.raises(AtCapacity):
        start(OTHER_ANON)
    third = Owner(user_id=None, session_key="u" * 32)
    for owner, ticket, place in ((OTHER_ANON, "t1", 1), (third, "t2", 2)):
        with pytest.raises(AtCapacity) as waiting:
            services.lab_start(owner=owner, image_slug="busybox", client_address="x", ticket=ticket)
        assert waiting.value.position == place
    services.lab_end(lab=first, reason=EndReason.USER)
    with pytest.raises(AtCapacity) as still:
        services.lab_start(owner=third, image_slug="busybox", client_address="x", ticket="t2")
    assert still.value.position == 2
    lab = services.lab_start(
        owner=OTHER_ANON, image_slug="busybox", client_address="x", ticket="t1"
    )
    assert lab.is_active
    assert memory_live.queue_position("t2") == 1


def test_an_engine_that_is_down_refuses_the_start_and_says_why(fake_engine: FakeEngine) -> None:
    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    with pytest.raises(ApplicationError) as raised:
        start()
    assert raised.value.user_message.startswith("The container engine is not answering")
    assert raised.value.temporary
    assert not Lab.objects.exists()


def test_a_launch_that_fails_ends_the_lab_and_keeps_why(fake_engine: FakeEngine) -> None:
    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    fake_engine.fail_ops = {"launch"}
    with says(ApplicationError, "The container engine is not answering"):
        start()
    lab = Lab.objects.get()
    assert lab.ended_reason == EndReason.FAILED
    instance = lab.instances.get()
    assert instance.status == InstanceStatus.REMOVED
    assert instance.error.startswith("The container engine is not answering")
    assert selectors.lab_failures(lab=lab) == [("node1", instance.error)]


def test_an_unknown_image_slug_is_refused() -> None:
    with says(ApplicationError, "no image called"):
        start(image="nope")


def test_extend_adds_a_step_up_to_the_maximum() -> None:
    lab = start()
    first_end = lab.expires_at
    services.lab_extend(lab=lab)
    assert lab.expires_at - first_end == timedelta(hours=1)
    services.lab_extend(lab=lab)
    assert lab.expires_at == lab.max_expires_at
    with says(LimitReached, "cannot be extended"):
        services.lab_extend(lab=lab)


def test_expiry_ends_due_labs_and_removes_their_containers(fake_engine: FakeEngine) -> None:
    due, fresh = start(), start(OTHER_ANON)
    Lab.objects.filter(id=due.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = services.labs_expire_due()
    assert result == {"expired": 1, "removed_late": 0}
    due.refresh_from_db()
    assert due.ended_reason == EndReason.EXPIRED
    assert due.instances.get().status == InstanceStatus.REMOVED
    assert list(fake_engine.by_id) == [fresh.instances.get().container_id]


def test_a_teardown_that_failed_is_retried_by_the_next_expiry_run(
    fake_engine: FakeEngine,
) -> None:
    lab = start()
    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    services.lab_end(lab=lab, reason=EndReason.USER)
    assert lab.instances.get().status == InstanceStatus.RUNNING
    fake_engine.fail = None
    assert services.labs_expire_due() == {"expired": 0, "removed_late": 1}
    assert not fake_engine.by_id


def test_instances_per_lab_are_limited_and_numbered() -> None:
    lab = start()
    names = [services.instance_add(lab=lab, owner=ANON, image_slug="busybox").name]
    names.append(services.instance_add(lab=lab, owner=ANON, image_slug="debian").name)
    assert names == ["node2", "node3"]
    with says(LimitReached, "3 instances at most"):
        services.instance_add(lab=lab, owner=ANON, image_slug="busybox")


def test_removing_an_instance_removes_its_container_and_frees_a_place(
    fake_engine: FakeEngine,
) -> None:
    lab = start()
    second = services.instance_add(lab=lab, owner=ANON, image_slug="busybox")
    services.instance_remove(lab=lab, instance=second)
    assert second.container_id not in fake_engine.by_id
    assert selectors.instances_active(lab=lab).count() == 1
    assert services.instance_add(lab=lab, owner=ANON, image_slug="busybox").name == "node3"


def test_restart_restarts_the_container(fake_engine: FakeEngine) -> None:
    lab = start()
    instance = lab.instances.get()
    services.instance_restart(lab=lab, instance=instance)
    assert ("restart", instance.container_id) in fake_engine.calls


def test_rebuild_restores_live_state_and_removes_orphans(
    fake_engine: FakeEngine, memory_live: MemoryLiveState
) -> None:
    lab = start()
    instance = lab.instances.get()
    gone = services.instance_add(lab=lab, owner=ANON, image_slug="busybox")
    fake_engine.by_id.pop(gone.container_id)
    orphan = fake_engine.by_id[instance.container_id].spec
    import asyncio

    stray = asyncio.run(
        fake_engine.launch(
            InstanceSpec(
                image=orphan.image,
                name="stray",
                hostname="x",
                shell=("/bin/sh",),
                labels={LABEL_SITE: "1", LABEL_INSTANCE: "999"},
            )
        )
    )
    memory_live.values.clear()
    counts = services.live_state_rebuild()
    assert counts == {"instances": 2, "labs": 1, "orphans": 1, "lost": 1, "stuck": 0}
    assert stray.container_id not in fake_engine.by_id
    assert memory_live.instance_status(instance.id) == "running"
    assert memory_live.instance_status(gone.id) == "lost"
    assert memory_live.lab_expiry(str(lab.id)) == pytest.approx(lab.expires_at.timestamp())
    assert Instance.objects.get(id=gone.id).status == InstanceStatus.LOST


def test_signing_in_keeps_the_labs_started_anonymously(user: User) -> None:
    lab = start()
    assert services.labs_claim(session_key=ANON.session_key or "", user_id=user.pk) == 1
    lab.refresh_from_db()
    assert lab.owner_id == user.pk
    assert Owner(user_id=user.pk, session_key=None).owns(lab)
    assert not ANON.owns(lab)


def test_only_the_owner_gets_a_lab(user: User) -> None:
    lab = start()
    assert selectors.lab_get(lab_id=lab.id, owner=ANON) == lab
    for stranger in (OTHER_ANON, Owner(user_id=user.pk, session_key=None)):
        with pytest.raises(PermissionDenied):
            selectors.lab_get(lab_id=lab.id, owner=stranger)
    with pytest.raises(PermissionDenied):
        selectors.lab_get(lab_id=lab.id, owner=Owner(user_id=None, session_key=""))
    with pytest.raises(NotFound):
        selectors.lab_get(lab_id="00000000-0000-0000-0000-000000000000", owner=ANON)


def test_the_status_shows_time_left_and_each_instance(memory_live: MemoryLiveState) -> None:
    lab = start()
    instance = lab.instances.get()
    memory_live.presence_join(instance.id, "c1")
    status = selectors.lab_status(lab=lab)
    assert status["active"] is True
    assert 4 * 3600 - 5 < status["remaining_seconds"] <= 4 * 3600
    (shown,) = status["instances"]
    assert shown["name"] == "node1"
    assert shown["status"] == "running"
    assert shown["attached"] == 1
    assert shown["memory"] == 4 << 20


def test_an_ended_lab_says_why() -> None:
    lab = start()
    services.lab_end(lab=lab, reason=EndReason.EXPIRED)
    status = selectors.lab_status(lab=lab)
    assert status["active"] is False
    assert status["ended_reason"] == "its lifetime ran out"
    assert status["instances"] == []


def _limits_with(**per_class: dict[str, object]) -> dict[str, dict[str, object]]:
    from django.conf import settings

    return {name: {**limits, **per_class.get(name, {})} for name, limits in settings.LIMITS.items()}


def test_an_instance_gets_its_owners_class_resources(fake_engine: FakeEngine, user: User) -> None:
    limits = _limits_with(
        anonymous={"memory": 256 << 20, "cpus": 0.5, "pids": 128},
        user={"memory": 1 << 30, "cpus": 2.0, "pids": 512},
    )
    with override_settings(LIMITS=limits):
        anonymous = start().instances.get()
        signed_in = start(Owner(user_id=user.pk, session_key=None)).instances.get()
    specs = [fake_engine.by_id[i.container_id].spec for i in (anonymous, signed_in)]
    assert [(s.memory, s.cpus, s.pids) for s in specs] == [
        (256 << 20, 0.5, 128),
        (1 << 30, 2.0, 512),
    ]


def test_an_image_may_set_its_own_resources(fake_engine: FakeEngine) -> None:
    from playground.catalog.models import Image

    Image.objects.filter(slug="busybox").update(memory=64 << 20, pids=64)
    instance = start().instances.get()
    spec = fake_engine.by_id[instance.container_id].spec
    from django.conf import settings

    anonymous = settings.LIMITS["anonymous"]
    assert (spec.memory, spec.cpus, spec.pids) == (64 << 20, anonymous["cpus"], 64)
