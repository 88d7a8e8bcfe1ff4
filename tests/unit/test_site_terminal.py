"""The terminal consumer through Channels' WebsocketCommunicator and the whole ASGI stack
(origin check, sessions, auth), with the fake engine: ownership, hostile frames, flow
control, and the notices of an ended lab."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from playground.asgi import application
from playground.engine import FakeContainer, FakeEngine
from playground.errors import ApplicationError
from playground.labs import consumers, services
from playground.labs.models import EndReason, Instance, InstanceStatus, Lab
from playground.live import MemoryLiveState

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fake_engine", "memory_live", "catalog"),
]


def browser_with_lab() -> tuple[Client, Lab]:
    client = Client()
    response = client.post("/labs/new", {"image": "busybox"})
    lab = Lab.objects.get(id=response["Location"].split("/")[2])
    lab.terminal_path = (  # type: ignore[attr-defined]
        f"/ws/labs/{lab.id}/instances/{lab.instances.get().id}/terminal/"
    )
    return client, lab


def communicator(client: Client | None, lab: Lab, origin: bytes = b"http://127.0.0.1") -> Any:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if client is not None and "sessionid" in client.cookies:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, lab.terminal_path, headers=headers)  # type: ignore[attr-defined]


@pytest.fixture
def lab() -> tuple[Client, Lab]:
    return browser_with_lab()


async def connected(client: Client, lab: Lab) -> Any:
    ws = communicator(client, lab)
    ok, _ = await ws.connect()
    assert ok
    assert await ws.receive_from() == b"# "  # the fake's scrollback
    return ws


def container(fake: FakeEngine, lab: Lab) -> FakeContainer:
    (only,) = fake.by_id.values()
    return only


@pytest.mark.asyncio
async def test_keystrokes_go_in_and_output_comes_out(lab: tuple[Client, Lab]) -> None:
    ws = await connected(*lab)
    await ws.send_to(bytes_data=b"echo hi\r")
    assert await ws.receive_from() == b"echo hi\r"
    await ws.disconnect()


@pytest.mark.asyncio
async def test_someone_else_is_refused_at_the_handshake(lab: tuple[Client, Lab]) -> None:
    _, owned = lab
    stranger = await database_sync_to_async(browser_with_lab)()
    for client in (None, stranger[0]):
        ws = communicator(client, owned)
        ok, code = await ws.connect()
        assert (ok, code) == (False, consumers.CLOSE_FORBIDDEN)


@pytest.mark.asyncio
async def test_a_foreign_origin_is_refused(lab: tuple[Client, Lab]) -> None:
    ws = communicator(lab[0], lab[1], origin=b"http://evil.example")
    ok, _ = await ws.connect()
    assert not ok


@pytest.mark.asyncio
async def test_resize_frames_are_validated(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    ws = await connected(*lab)
    box = container(fake_engine, lab[1])
    hostile = [
        "not json",
        "[1, 2]",
        '{"type": "resize", "rows": "40", "cols": 100}',
        '{"type": "resize", "rows": true, "cols": 100}',
        '{"type": "resize", "rows": 0, "cols": 100}',
        '{"type": "resize", "rows": 40, "cols": 100000}',
        '{"type": "resize", "rows": 40.5, "cols": 100}',
        '{"type": "resize"}',
        '{"type": "ack", "bytes": -5}',
        '{"type": "nonsense"}',
        json.dumps({"type": "resize", "rows": 40, "cols": 100, "pad": "x" * 2000}),
    ]
    for text in hostile:
        await ws.send_to(text_data=text)
    await ws.send_to(text_data='{"type": "resize", "rows": 40, "cols": 100}')
    await ws.send_to(bytes_data=b"x")
    assert await ws.receive_from() == b"x"
    assert box.size == (40, 100)
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_huge_frame_closes_the_socket(lab: tuple[Client, Lab]) -> None:
    ws = await connected(*lab)
    await ws.send_to(bytes_data=b"x" * (consumers.MAX_INPUT + 1))
    closed = await ws.receive_output()
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_TOO_BIG}


@pytest.mark.asyncio
async def test_the_last_active_client_sets_the_size(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    small, big = await connected(*lab), await connected(*lab)
    box = container(fake_engine, lab[1])
    await small.send_to(text_data='{"type": "resize", "rows": 20, "cols": 60}')
    await big.send_to(text_data='{"type": "resize", "rows": 50, "cols": 200}')
    await big.send_to(bytes_data=b"a")
    await small.receive_from()
    assert box.size == (50, 200)
    await small.send_to(bytes_data=b"b")
    await big.receive_from()
    await big.receive_from()
    assert box.size == (20, 60)
    await small.disconnect()
    await big.disconnect()


@pytest.mark.asyncio
async def test_output_stops_at_the_window_until_acknowledged(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    ws = await connected(*lab)
    box = container(fake_engine, lab[1])
    chunk = b"y" * 65536
    for _ in range(40):  # 2.5 MiB
        box.output(chunk)
    received = 0
    while not await ws.receive_nothing(timeout=0.3):
        received += len(await ws.receive_from())
    assert consumers.WINDOW <= received < consumers.WINDOW + len(chunk)
    await ws.send_to(text_data=json.dumps({"type": "ack", "bytes": received}))
    more = len(await ws.receive_from())
    assert more == len(chunk)
    await ws.disconnect()


@pytest.mark.asyncio
async def test_the_exit_of_the_shell_is_told_then_closed(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    ws = await connected(*lab)
    container(fake_engine, lab[1]).exit(3)
    assert json.loads(await ws.receive_from()) == {"type": "exit", "code": 3}
    assert await ws.receive_output() == {"type": "websocket.close", "code": consumers.CLOSE_EXITED}


@pytest.mark.asyncio
async def test_an_ended_lab_tells_its_terminals_why(lab: tuple[Client, Lab]) -> None:
    ws = await connected(*lab)
    await database_sync_to_async(services.lab_end)(lab=lab[1], reason=EndReason.EXPIRED)
    assert json.loads(await ws.receive_from()) == {
        "type": "ended",
        "reason": "its lifetime ran out",
    }
    assert await ws.receive_output() == {"type": "websocket.close", "code": consumers.CLOSE_ENDED}
    ws = communicator(lab[0], lab[1])
    assert await ws.connect() == (False, consumers.CLOSE_UNAVAILABLE)


def waiting_instance(lab: Lab, status: InstanceStatus) -> Instance:
    """A second instance of ``lab`` that has no container yet (being launched or pulled)."""
    first = lab.instances.get()
    second = Instance.objects.create(
        lab=lab,
        number=2,
        name="node2",
        image=first.image,
        image_reference=first.image_reference,
        status=status,
    )
    lab.terminal_path = f"/ws/labs/{lab.id}/instances/{second.id}/terminal/"  # type: ignore[attr-defined]
    return second


async def text(ws: Any) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.receive_from())
    return message


@pytest.mark.asyncio
async def test_a_terminal_waits_for_its_container_then_attaches(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    client, owned = lab
    second = await database_sync_to_async(waiting_instance)(owned, InstanceStatus.STARTING)
    ws = communicator(client, owned)
    assert (await ws.connect())[0]
    assert await text(ws) == {"type": "waiting", "status": "starting"}
    await ws.send_to(text_data='{"type": "resize", "rows": 33, "cols": 99}')
    await ws.send_to(bytes_data=b"lost")  # nothing to type into yet
    assert await ws.receive_nothing(0.1)

    await database_sync_to_async(services.instance_launch)(instance_id=second.id)

    assert await text(ws) == {"type": "ready"}
    assert await ws.receive_from() == b"# "
    await second.arefresh_from_db()
    box = fake_engine.by_id[second.container_id]
    assert box.size == (33, 99)  # the size sent while waiting
    await ws.send_to(bytes_data=b"ok")
    assert await ws.receive_from() == b"ok"
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_terminal_shows_the_pull_so_far_then_live(
    fake_engine: FakeEngine, memory_live: MemoryLiveState, lab: tuple[Client, Lab]
) -> None:
    client, owned = lab
    second = await database_sync_to_async(waiting_instance)(owned, InstanceStatus.PULLING)
    await Instance.objects.filter(id=second.id).aupdate(image_reference="alpine:3")
    so_far = {"reference": "alpine:3", "layers": [], "pulled": False, "note": ""}
    memory_live.pull_progress_set(second.id, so_far)  # as a page reloaded mid-pull sees it
    ws = communicator(client, owned)
    assert (await ws.connect())[0]
    assert await text(ws) == {"type": "waiting", "status": "pulling"}
    assert await text(ws) == {"type": "pull", **so_far}

    await database_sync_to_async(services.instance_pull)(instance_id=second.id)

    first, last = await text(ws), await text(ws)
    assert first["type"] == last["type"] == "pull"
    assert [layer["phase"] for layer in first["layers"]] == ["waiting"]  # the first step
    assert last["pulled"] is True
    assert [layer["phase"] for layer in last["layers"]] == ["done", "done"]
    assert await text(ws) == {"type": "ready"}
    assert await ws.receive_from() == b"# "
    await ws.disconnect()


@pytest.mark.asyncio
async def test_a_terminal_is_told_why_its_instance_failed(
    fake_engine: FakeEngine, lab: tuple[Client, Lab]
) -> None:
    from runtime.errors import DaemonUnavailable

    client, owned = lab
    second = await database_sync_to_async(waiting_instance)(owned, InstanceStatus.STARTING)
    ws = communicator(client, owned)
    assert (await ws.connect())[0]
    assert (await text(ws))["type"] == "waiting"
    fake_engine.fail = DaemonUnavailable("/x.sock", "refused")
    with pytest.raises(ApplicationError):
        await database_sync_to_async(services.instance_launch)(instance_id=second.id)
    failed = await text(ws)
    assert failed["type"] == "failed"
    assert failed["message"].startswith("The container engine is not answering")
    assert await ws.receive_output() == {"type": "websocket.close", "code": consumers.CLOSE_FAILED}
    ws = communicator(client, owned)  # a failed instance has no terminal
    assert await ws.connect() == (False, consumers.CLOSE_UNAVAILABLE)


@pytest.mark.asyncio
async def test_a_missed_notice_is_made_up_for_by_asking_again(
    lab: tuple[Client, Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "RECHECK", 0.1)
    client, owned = lab
    second = await database_sync_to_async(waiting_instance)(owned, InstanceStatus.STARTING)
    ws = communicator(client, owned)
    assert (await ws.connect())[0]
    assert (await text(ws))["type"] == "waiting"
    # The notice is missed (another process, a channel layer hiccup): the recheck finds it.
    await Instance.objects.filter(id=second.id).aupdate(
        status=InstanceStatus.FAILED, error="It broke."
    )
    assert await text(ws) == {"type": "failed", "message": "It broke."}
    await ws.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("attached_first", [True, False])
async def test_a_terminal_attaches_while_its_container_starts_and_hears_if_it_fails(
    fake_engine: FakeEngine,
    lab: tuple[Client, Lab],
    monkeypatch: pytest.MonkeyPatch,
    attached_first: bool,
) -> None:
    """The terminal attaches to the created container while it starts (or finds it gone
    already), and is told when the start fails."""
    from runtime.errors import InvalidSpec

    monkeypatch.setattr(consumers, "RECHECK", 0.1)
    start = fake_engine.start

    async def start_once_attached(container_id: str) -> Any:
        while attached_first and not fake_engine.by_id[container_id].terminals:
            await asyncio.sleep(0.01)
        return await start(container_id)

    monkeypatch.setattr(fake_engine, "start", start_once_attached)
    client, owned = lab
    second = await database_sync_to_async(waiting_instance)(owned, InstanceStatus.STARTING)
    ws = communicator(client, owned)
    assert (await ws.connect())[0]
    assert (await text(ws))["type"] == "waiting"
    fake_engine.fail = InvalidSpec("process.args", "/bin/sh: not found")
    fake_engine.fail_ops = {"start"}
    with pytest.raises(ApplicationError):  # as on the server's loop, in this test's loop
        await services._instance_launch_soon(second)
    texts, screen = [], b""
    while (message := await ws.receive_output(2))["type"] == "websocket.send":
        if message.get("bytes") is not None:
            screen += message["bytes"]
        else:
            texts.append(json.loads(message["text"]))
    assert message == {"type": "websocket.close", "code": consumers.CLOSE_FAILED}
    if attached_first:
        assert texts[0] == {"type": "ready"}  # attached when created, before the start
        assert screen == b"# "
    assert texts[-1] == {"type": "failed", "message": "The container engine could not do that."}


def test_control_frames_parse_only_what_is_valid() -> None:
    assert consumers.parse_control('{"type":"resize","rows":24,"cols":80}') == ("resize", 24, 80)
    assert consumers.parse_control('{"type":"ack","bytes":10}') == ("ack", 10, 0)
    assert consumers.parse_control('{"type":"resize","rows":24}') is None
    assert consumers.parse_control("\x00\xff") is None
    assert consumers.parse_control('"resize"') is None
    assert consumers.parse_control('{"type":"ack","bytes":1e99}') is None
