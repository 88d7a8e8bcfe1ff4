"""The terminal consumer against the real engine: a busybox shell in a container, reached
through the whole ASGI stack with Channels' WebsocketCommunicator."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from playground.labs import consumers, services
from playground.labs.models import EndReason, Lab
from tests.site.terminal_client import Terminal, communicator, open_terminal, start_lab

pytestmark = [
    pytest.mark.root,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("real_engine", "memory_live", "catalog"),
]

PROMPT = b"root@node1:/# "


@pytest.fixture
def browser() -> Client:
    return Client()


@pytest.fixture
def lab(browser: Client) -> tuple[Lab, str]:
    return start_lab(browser)


async def shell(browser: Client, path: str) -> Terminal:
    terminal = await open_terminal(browser, path)
    await terminal.read_until(PROMPT)
    await terminal.settle()
    return terminal


@pytest.mark.asyncio
async def test_a_command_runs_in_the_container(browser: Client, lab: tuple[Lab, str]) -> None:
    terminal = await shell(browser, lab[1])
    await terminal.type("echo $((6*7))\r")
    await terminal.read_until(b"\r\n42\r\n")
    await terminal.type("hostname; cat /proc/1/cmdline; echo\r")
    assert b"node1\r\n/bin/sh" in await terminal.read_until(b"/bin/sh")
    await terminal.close()


@pytest.mark.asyncio
async def test_the_pty_takes_the_size_of_the_browser(browser: Client, lab: tuple[Lab, str]) -> None:
    terminal = await shell(browser, lab[1])
    await terminal.resize(37, 101)
    await terminal.type("stty size\r")
    await terminal.read_until(b"\r\n37 101\r\n")
    await terminal.close()


@pytest.mark.asyncio
async def test_reconnecting_replays_the_scrollback_of_the_same_shell(
    browser: Client, lab: tuple[Lab, str]
) -> None:
    terminal = await shell(browser, lab[1])
    await terminal.type("echo pid-$$ marker-$((40+2))\r")
    line = (await terminal.read_until(b"marker-42\r\n")).split(b"\r\n")[-2]
    await terminal.close()
    again = await open_terminal(browser, lab[1])
    await again.read_until(line)  # the same PID: the same shell, replayed
    await again.close()


@pytest.mark.asyncio
async def test_two_clients_share_one_shell(browser: Client, lab: tuple[Lab, str]) -> None:
    one = await shell(browser, lab[1])
    two = await shell(browser, lab[1])
    await one.type("echo shared-$((1+1))\r")
    await two.read_until(b"shared-2\r\n")
    await one.close()
    await two.close()


@pytest.mark.asyncio
async def test_a_stranger_cannot_attach(lab: tuple[Lab, str]) -> None:
    stranger = Client()
    await database_sync_to_async(start_lab)(stranger)
    for client in (None, stranger):
        ws = communicator(client, lab[1])
        assert await ws.connect(timeout=10) == (False, consumers.CLOSE_FORBIDDEN)


@pytest.mark.asyncio
async def test_a_flood_is_held_back_and_ctrl_c_stops_it(
    browser: Client, lab: tuple[Lab, str]
) -> None:
    terminal = await shell(browser, lab[1])
    await terminal.type("cat /dev/urandom | base64\r")
    # Without acknowledgements, no more than the window is sent.
    received = 0
    while not await terminal.ws.receive_nothing(timeout=1.0):
        message = await terminal.ws.receive_output()
        received += len(message.get("bytes") or b"")
    assert consumers.WINDOW <= received < consumers.WINDOW + (1 << 17)
    await terminal.ws.send_to(text_data=json.dumps({"type": "ack", "bytes": received}))
    await terminal.type("\x03")
    await terminal.read_until(PROMPT, timeout=10)
    await terminal.settle()
    await terminal.type("echo calm-$((2*3))\r")
    await terminal.read_until(b"calm-6\r\n", timeout=10)
    await terminal.close()


@pytest.mark.asyncio
async def test_exiting_the_shell_closes_the_terminal_and_restart_brings_it_back(
    browser: Client, lab: tuple[Lab, str]
) -> None:
    terminal = await shell(browser, lab[1])
    await terminal.type("exit 5\r")
    assert await terminal.until_closed() == consumers.CLOSE_EXITED
    assert {"type": "exit", "code": 5} in terminal.texts
    instance = await database_sync_to_async(lambda: lab[0].instances.get())()
    await database_sync_to_async(services.instance_restart)(lab=lab[0], instance=instance)
    again = await shell(browser, lab[1])
    await again.type("echo back\r")
    await again.read_until(b"back\r\n")
    await again.close()


@pytest.mark.asyncio
async def test_ending_the_lab_removes_the_container_and_tells_why(
    browser: Client, lab: tuple[Lab, str]
) -> None:
    terminal = await shell(browser, lab[1])
    await database_sync_to_async(services.lab_end)(lab=lab[0], reason=EndReason.EXPIRED)
    assert await terminal.until_closed() == consumers.CLOSE_ENDED
    assert {"type": "ended", "reason": "its lifetime ran out"} in terminal.texts
    from playground import engine

    instance = await database_sync_to_async(lambda: lab[0].instances.get())()
    state = await engine.engine().state(instance.container_id)
    assert state.status == "missing"
