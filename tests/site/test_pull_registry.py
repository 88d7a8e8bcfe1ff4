"""An image that the engine does not have is pulled from a real registry (Debian's
docker-registry on 127.0.0.1) by the ``instance_pull`` task, called as a plain function
against the real engine and a real Redis (live state and channel layer), then launched."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import override_settings

from playground import engine, live
from playground.catalog.models import Image
from playground.labs import services, tasks
from playground.labs.models import EndReason, InstanceStatus
from playground.labs.policy import Owner
from tests.conftest import build_busybox_rootfs
from tests.integration.registry_support import run_registry
from tests.site_fixtures import ROOT

pytestmark = [
    pytest.mark.root,
    pytest.mark.registry,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("real_engine", "redis_live", "catalog"),
]

LISTENER = "pull-test-listener"


def seed(registry_host: str, directory: Path) -> str:
    """Push an image with a layer no engine has (busybox and random bytes) to the registry,
    from a root of its own, with our CLI."""
    rootfs = build_busybox_rootfs(directory / "rootfs")
    (rootfs / "etc/pulled").write_bytes(os.urandom(256 << 10))
    with tarfile.open(directory / "rootfs.tar", "w") as tar:
        tar.add(rootfs, arcname=".")
    ref = f"{registry_host}/play/pulled:v1"
    for args in (("import", str(directory / "rootfs.tar"), ref), ("push", ref)):
        done = subprocess.run(
            [sys.executable, "-m", "runtime", "--root", str(directory / "root"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    return ref


@pytest.fixture
def redis_channel_layer(redis_url: str) -> Iterator[Any]:
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": "pg:asgi-test"},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        yield get_channel_layer()


def received(layer: Any) -> list[dict[str, Any]]:
    async def drain() -> list[dict[str, Any]]:
        messages = []
        while not messages or messages[-1]["type"] != "instance.ready":
            messages.append(await asyncio.wait_for(layer.receive(LISTENER), 5))
        return messages

    result: list[dict[str, Any]] = async_to_sync(drain)()
    return result


def test_an_image_not_on_the_host_is_pulled_with_progress_then_runs(
    tmp_path: Path,
    redis_url: str,
    redis_channel_layer: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enqueued: list[int] = []
    monkeypatch.setattr(tasks.instance_pull, "delay", enqueued.append)
    with run_registry(tmp_path / "registry") as registry:
        ref = seed(registry.host, tmp_path / "seed")
        Image.objects.create(slug="pulled", reference=ref, title="Pulled", position=9)
        owner = Owner(user_id=None, session_key="r" * 32)
        lab = services.lab_start(owner=owner, image_slug="pulled", client_address="127.0.0.1")
        instance = lab.instances.get()
        assert instance.status == InstanceStatus.PULLING
        assert enqueued == [instance.id]
        group = services.instance_group(instance.id)
        async_to_sync(redis_channel_layer.group_add)(group, LISTENER)

        tasks.instance_pull(instance.id)

    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING
    assert engine.blocking(engine.engine().state)(instance.container_id).status == "running"
    progress = live.state().pull_progress(instance.id)
    assert progress is not None and progress["pulled"] is True
    (layer,) = progress["layers"]
    assert layer["phase"] == "done" and layer["current"] == layer["total"] > 256 << 10
    key = f"{live.NS}instance:{instance.id}:pull"
    assert 0 < redis.Redis.from_url(redis_url).ttl(key) <= live.PULL_TTL
    messages = received(redis_channel_layer)
    pulls = [m["progress"] for m in messages if m["type"] == "instance.pull"]
    assert len(pulls) >= 2
    assert pulls[0]["reference"] == ref and pulls[-1] == progress
    assert messages[-1] == {"type": "instance.ready", "container_id": instance.container_id}
    services.lab_end(lab=lab, reason=EndReason.USER)
    assert engine.blocking(engine.engine().state)(instance.container_id).status == "missing"
