"""The engine through its client API and daemon, asserting from inside the containers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.client import AttachStream, ContainerSpec, EngineClient
from runtime.errors import ContainerNotFound, ContainerRuntimeError, ImageNotFound, NameConflict
from tests.integration.engine_fixtures import EngineProcess, running_engine

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    with running_engine(tmp_path_factory.mktemp("engine")) as eng:
        yield eng


@pytest.fixture
def client(engine: EngineProcess) -> EngineClient:
    return EngineClient(engine.socket_path)


async def _read_until(stream: AttachStream, needle: bytes, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen in {out[-500:]!r}")
        chunk = await asyncio.wait_for(stream.read(), left)
        if chunk is None:
            break
        out += chunk[1]
    return out


async def _run(client: EngineClient, *cmd: str, **options: object) -> tuple[int, bytes]:
    spec = ContainerSpec(image="busybox", cmd=tuple(cmd), **options)  # type: ignore[arg-type]
    info = await client.create(spec)
    stream = await client.attach(info.id)
    await client.start(info.id)
    out = b""
    while (chunk := await stream.read()) is not None:
        out += chunk[1]
    code = await client.wait(info.id)
    await stream.close()
    await client.remove(info.id, force=True)
    return code, out


def test_a_container_runs_with_the_hardened_defaults(client: EngineClient) -> None:
    code, out = asyncio.run(
        _run(client, "sh", "-c", "echo $$; cat /proc/self/status; ip -o link | wc -l")
    )
    assert code == 0
    lines = out.decode().splitlines()
    assert lines[0] == "1"
    status = dict(line.split(":\t", 1) for line in lines[1:-1] if ":\t" in line)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    cap_eff = int(status["CapEff"], 16)
    assert cap_eff & (1 << 13) == 0  # CAP_NET_RAW dropped
    assert cap_eff & (1 << 27) == 0  # CAP_MKNOD dropped
    assert cap_eff & (1 << 21) == 0  # CAP_SYS_ADMIN never
    assert lines[-1].strip() == "1"  # only loopback


def test_exit_codes_follow_docker(client: EngineClient) -> None:
    assert asyncio.run(_run(client, "sh", "-c", "exit 42"))[0] == 42
    assert asyncio.run(_run(client, "sh", "-c", "kill -9 $$; sleep 1"))[0] in (137, 0)
    code, _ = asyncio.run(_run(client, "sh", "-c", "sh -c 'kill -TERM $$'; echo $?"))
    assert code == 0


def test_a_memory_limit_ends_in_an_oom_kill_with_137(client: EngineClient) -> None:
    async def scenario() -> tuple[int, bool]:
        spec = ContainerSpec(
            image="busybox",
            cmd=("sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"),
            memory=32 * 1024 * 1024,
        )
        info = await client.run(spec)
        code = await client.wait(info.id)
        inspected = await client.inspect(info.id)
        await client.remove(info.id, force=True)
        return code, inspected.oom_killed

    code, oom = asyncio.run(scenario())
    assert code == 137
    assert oom


def test_unknown_image_and_name_clash_are_clear_errors(client: EngineClient) -> None:
    async def scenario() -> None:
        with pytest.raises(ImageNotFound):
            await client.create(ContainerSpec(image="no-such-image"))
        info = await client.create(ContainerSpec(image="busybox", cmd=("true",), name="twin"))
        try:
            with pytest.raises(NameConflict):
                await client.create(ContainerSpec(image="busybox", cmd=("true",), name="twin"))
        finally:
            await client.remove(info.id, force=True)
        with pytest.raises(ContainerNotFound):
            await client.inspect("0123456789ab")

    asyncio.run(scenario())


def test_two_attachers_share_one_tty_and_resize_reaches_both(client: EngineClient) -> None:
    async def scenario() -> None:
        info = await client.run(ContainerSpec(image="busybox", cmd=("sh",), tty=True, stdin=True))
        try:
            one = await client.attach(info.id)
            two = await client.attach(info.id)
            await one.write(b"echo from-one-$((1+1))\n")
            assert b"from-one-2" in await _read_until(two, b"from-one-2")
            await two.resize(33, 111)
            await one.write(b"stty size\n")
            assert b"33 111" in await _read_until(one, b"33 111")
            await one.close()
            await two.close()
        finally:
            await client.remove(info.id, force=True)

    asyncio.run(scenario())


def test_the_scrollback_is_replayed_to_a_late_attacher(client: EngineClient) -> None:
    async def scenario() -> None:
        spec = ContainerSpec(
            image="busybox", cmd=("sh", "-c", "seq 1 3000; sleep 30"), tty=True, stdin=True
        )
        info = await client.run(spec)
        try:
            await asyncio.sleep(1.0)
            late = await client.attach(info.id)
            seen = await _read_until(late, b"3000")
            assert b"\n1\r\n" in seen or seen.startswith(b"1\r\n")
            await late.close()
        finally:
            await client.remove(info.id, force=True)

    asyncio.run(scenario())


def test_exec_runs_in_the_same_container(client: EngineClient) -> None:
    async def scenario() -> None:
        info = await client.run(ContainerSpec(image="busybox", cmd=("sleep", "60"), hostname="ex"))
        try:
            stream = await client.exec(info.id, ["sh", "-c", "hostname; ps; exit 3"])
            out = b""
            while (chunk := await stream.read()) is not None:
                out += chunk[1]
            assert stream.exit_code == 3
            assert out.startswith(b"ex\n")
            assert b"sleep 60" in out
        finally:
            await client.remove(info.id, force=True)

    asyncio.run(scenario())


def test_logs_keep_stdout_and_stderr_apart(client: EngineClient) -> None:
    async def scenario() -> None:
        info = await client.run(
            ContainerSpec(image="busybox", cmd=("sh", "-c", "echo out; echo err >&2"))
        )
        await client.wait(info.id)
        chunks = [c async for c in client.logs(info.id)]
        await client.remove(info.id)
        streams = {kind: b"".join(d for k, d in chunks if k == kind) for kind in (1, 2)}
        assert streams[1] == b"out\n"
        assert streams[2] == b"err\n"

    asyncio.run(scenario())


def test_rm_refuses_a_running_container_without_force(client: EngineClient) -> None:
    async def scenario() -> None:
        info = await client.run(ContainerSpec(image="busybox", cmd=("sleep", "60")))
        with pytest.raises(ContainerRuntimeError, match="running"):
            await client.remove(info.id)
        await client.stop(info.id, timeout=1)
        assert (await client.inspect(info.id)).status == "exited"
        await client.remove(info.id)

    asyncio.run(scenario())


def test_a_sized_volume_fills_up_with_enospc_inside(
    client: EngineClient, engine: EngineProcess
) -> None:
    created = engine.cli("volume", "create", "--size", "8m", "small")
    assert created.returncode == 0, created.stderr
    _code, out = asyncio.run(
        _run(
            client,
            "sh",
            "-c",
            "dd if=/dev/zero of=/data/fill bs=1M count=64 2>&1 | grep -o 'No space left on device'",
            volumes=("small:/data",),
        )
    )
    assert b"No space left on device" in out, out
    assert engine.cli("volume", "rm", "small").returncode == 0


def test_containers_survive_a_daemon_killed_with_sigkill(
    client: EngineClient, engine: EngineProcess
) -> None:
    async def before() -> str:
        info = await client.run(ContainerSpec(image="busybox", cmd=("sh",), tty=True, stdin=True))
        stream = await client.attach(info.id)
        await stream.write(b"echo before-$((2*21))\n")
        await _read_until(stream, b"before-42")
        await stream.close()
        return info.id

    cid = asyncio.run(before())
    engine.restart_daemon(signal.SIGKILL)

    async def after() -> None:
        client2 = EngineClient(engine.socket_path)
        listed = {c.id: c.status for c in await client2.list()}
        assert listed.get(cid) == "running"
        stream = await client2.attach(cid)
        seen = await _read_until(stream, b"before-42")  # scrollback survived
        await stream.write(b"echo after-$((3*3))\n")
        seen += await _read_until(stream, b"after-9")
        await stream.close()
        ex = await client2.exec(cid, ["echo", "exec-ok"])
        out = b""
        while (chunk := await ex.read()) is not None:
            out += chunk[1]
        assert out == b"exec-ok\n"
        logs = b"".join([d async for _, d in client2.logs(cid)])
        assert b"before-42" in logs and b"after-9" in logs
        await client2.remove(cid, force=True)

    asyncio.run(after())


def test_a_shell_gets_default_signal_dispositions(client: EngineClient) -> None:
    # Run grep itself as the process: a busybox shell as PID 1 ignores SIGQUIT on its own.
    code, out = asyncio.run(_run(client, "grep", "-E", "SigIgn|SigBlk", "/proc/self/status"))
    assert code == 0
    fields = dict(line.split(":\t") for line in out.decode().splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) == 0


def test_nothing_is_left_behind_after_remove(engine: EngineProcess) -> None:
    containers = Path(engine.root) / "containers"
    leftovers = [p for p in os.listdir(containers)] if containers.exists() else []
    assert leftovers == [] or all((containers / p / "container.json").exists() for p in leftovers)
