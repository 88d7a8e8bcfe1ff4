"""The Celery tasks run by a real worker (a subprocess, not eager mode) on a real Redis broker,
against the real engine and the test database."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.utils import timezone

from playground import engine, live
from playground.celery import app as celery_app
from playground.labs import services, tasks
from playground.labs.models import EndReason, InstanceStatus, Lab
from playground.labs.policy import Owner
from tests.integration.engine_fixtures import EngineProcess
from tests.site_fixtures import celery_worker, site_env

pytestmark = [
    pytest.mark.root,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("real_engine", "redis_live", "catalog"),
]


@pytest.fixture(scope="module")
def worker(
    django_db_setup: None,
    redis_url: str,
    engine_process: EngineProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    env = site_env(
        database=str(connection.settings_dict["NAME"]),
        redis_url=redis_url,
        engine_socket=engine_process.socket_path,
    )
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = redis_url
    with celery_worker(env, log):
        yield
    celery_app.conf.broker_url = previous


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the worker did not do it in time"
        time.sleep(0.2)


def start() -> Lab:
    owner = Owner(user_id=None, session_key="w" * 32)
    return services.lab_start(owner=owner, image_slug="busybox", client_address="127.0.0.1")


@pytest.mark.usefixtures("worker")
def test_the_worker_expires_due_labs_and_removes_their_containers() -> None:
    lab = start()
    container_id = lab.instances.get().container_id
    assert engine.blocking(engine.engine().state)(container_id).status == "running"
    Lab.objects.filter(id=lab.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    tasks.labs_expire_due.delay()

    def ended() -> bool:
        lab.refresh_from_db()
        return not lab.is_active and lab.instances.get().status == InstanceStatus.REMOVED

    eventually(ended)
    assert lab.ended_reason == EndReason.EXPIRED
    assert engine.blocking(engine.engine().state)(container_id).status == "missing"


@pytest.mark.usefixtures("worker")
def test_the_worker_rebuilds_the_live_state_after_redis_lost_it(redis_url: str) -> None:
    lab = start()
    instance = lab.instances.get()
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{live.NS}*"))
    assert live.state().instance_status(instance.id) is None

    tasks.live_state_rebuild.delay()

    eventually(lambda: live.state().instance_status(instance.id) == "running")
    assert live.state().lab_expiry(str(lab.id)) == pytest.approx(lab.expires_at.timestamp())
    services.lab_end(lab=lab, reason=EndReason.USER)
