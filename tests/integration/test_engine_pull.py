"""Pull through the daemon's client API from a real registry, then run what was pulled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtime.client import ContainerSpec, EngineClient, PullProgress
from runtime.errors import ContainerRuntimeError
from tests.integration.engine_fixtures import running_engine
from tests.integration.registry_support import run_registry

pytestmark = [pytest.mark.root, pytest.mark.registry]


def test_a_pushed_image_is_pulled_through_the_daemon_and_runs(tmp_path: Path) -> None:
    with run_registry(tmp_path / "registry") as registry, running_engine(tmp_path / "a") as one:
        ref = f"{registry.host}/play/busybox:v1"
        pushed = one.cli("push", "busybox", ref)
        assert pushed.returncode == 0, pushed.stderr
        with running_engine(tmp_path / "b") as two:
            client = EngineClient(two.socket_path)

            async def scenario() -> tuple[list[PullProgress], bytes]:
                events = [e async for e in client.pull(ref)]
                info = await client.create(ContainerSpec(image=ref, cmd=("echo", "pulled-ok")))
                stream = await client.attach(info.id)
                await client.start(info.id)
                out = b""
                while (chunk := await stream.read()) is not None:
                    out += chunk[1]
                await client.remove(info.id, force=True)
                with pytest.raises(ContainerRuntimeError):
                    [e async for e in client.pull(f"{registry.host}/play/missing:v1")]
                return events, out

            events, out = asyncio.run(scenario())
    assert events[-1].phase == "pulled"
    assert events[-1].image_id.startswith("sha256:")
    assert {e.phase for e in events[:-1]} <= {
        "waiting",
        "downloading",
        "verifying",
        "extracting",
        "done",
        "exists",
    }
    assert out == b"pulled-ok\n"
