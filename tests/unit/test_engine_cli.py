"""The engine CLI (``python -m runtime``) without root: flags into RunOptions, Docker's output
formats and exit statuses, lazy imports, and whole commands against a fake daemon that
speaks the real wire protocol."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import COMMANDS, command_parser, main, resolve_root, summary
from runtime.cli import format as fmt
from runtime.cli.cmd_ps import summary as ps_summary
from runtime.cli.context import Context
from runtime.cli.options import build_options, parse_memory
from runtime.cli.records import image_user, volume_user
from runtime.cli.status import error_line, mark_from_daemon, start_failure_status
from runtime.cli.stdio import Proxy
from runtime.cli.wire import Channel
from runtime.config import DEFAULT_ROOT, EngineConfig
from runtime.container.model import RunOptions
from runtime.errors import ContainerRuntimeError, InvalidArgument
from runtime.supervisor import protocol
from tests.unit.fake_engine import FakeEngine

REPO = Path(__file__).resolve().parents[2]
NOW = 1_767_261_600.0  # 2026-01-01T10:00:00Z


def parse_run(*argv: str) -> RunOptions:
    args = command_parser("run", importlib.import_module("runtime.cli.cmd_run")).parse_args(argv)
    return RunOptions.from_dict(build_options(args, environ={"FROM_CALLER": "yes"}))


# -- run and create flags -------------------------------------------------------------------


def test_the_options_dict_has_exactly_the_fields_of_run_options() -> None:
    args = command_parser("create", importlib.import_module("runtime.cli.cmd_create")).parse_args(
        ["busybox"]
    )
    assert set(build_options(args)) == {f.name for f in dataclasses.fields(RunOptions)}


def test_run_flags_become_run_options() -> None:
    options = parse_run(
        "--rm", "-it", "--name", "web", "-e", "A=1", "-e", "FROM_CALLER", "-e", "UNSET",
        "-w", "/srv", "--hostname", "box", "-u", "1000:1000", "--memory", "512m",
        "--cpus", "1.5", "--pids-limit", "64", "--read-only", "-v", "data:/data:ro",
        "--label", "team=a", "--label", "flag", "busybox", "sh", "-c", "echo --rm -d",
    )  # fmt: skip
    assert options == RunOptions(
        image="busybox",
        cmd=("sh", "-c", "echo --rm -d"),
        env=("A=1", "FROM_CALLER=yes"),
        workdir="/srv",
        hostname="box",
        user="1000:1000",
        tty=True,
        stdin=True,
        memory=512 << 20,
        cpus=1.5,
        pids_limit=64,
        read_only=True,
        volumes=("data:/data:ro",),
        network="none",
        name="web",
        labels=(("team", "a"), ("flag", "")),
        auto_remove=True,
    )


def test_options_stop_at_the_image() -> None:
    options = parse_run("busybox", "--rm", "-d")
    assert options.cmd == ("--rm", "-d")
    assert not options.auto_remove


def test_no_command_keeps_the_images_and_an_empty_entrypoint_clears_it() -> None:
    assert parse_run("busybox").cmd is None
    assert parse_run("busybox").entrypoint is None
    assert parse_run("--entrypoint", "", "busybox").entrypoint == ()
    assert parse_run("--entrypoint", "/bin/sh -x", "busybox").entrypoint == ("/bin/sh -x",)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512m", 512 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29), ("100000", 100000), ("64k", 65536)],
)
def test_memory_takes_docker_units(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "0", "-1m", "1x"])
def test_memory_refuses_what_is_not_a_positive_size(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_memory(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--bogus", "busybox"],
        ["run"],
        ["run", "--cpus", "many", "busybox"],
        ["bogus-command"],
        ["--bogus"],
        ["volume", "shred"],
        ["bootstrap", "alpine"],
    ],
)
def test_a_bad_flag_exits_125(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 125
    assert capsys.readouterr().err.startswith("Error: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--network", "host", "busybox"],
        ["run", "--cpus", "-1", "busybox"],
        ["run", "--memory", "lots", "busybox"],
        ["create", "--label", "=v", "busybox"],
    ],
)
def test_a_bad_flag_value_exits_125_with_one_line(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), *argv]) == 125
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert not (tmp_path / "daemon.log").exists()  # rejected before any daemon is asked


def test_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name, path in COMMANDS.items():
        assert f"  {name} " in out
        assert summary(importlib.import_module(path))


# -- root and configuration -----------------------------------------------------------------


def test_the_root_comes_from_the_flag_then_the_environment_then_the_default(
    tmp_path: Path,
) -> None:
    env = {"PLAYGROUND_ROOT": "/srv/pg"}
    assert resolve_root(str(tmp_path), env) == str(tmp_path)
    assert resolve_root(None, env) == "/srv/pg"
    assert resolve_root(None, {}) == DEFAULT_ROOT
    assert resolve_root("relative", {}) == os.path.abspath("relative")
    with pytest.raises(InvalidArgument):
        resolve_root(None, {"PLAYGROUND_ROOT": " "})


def test_the_context_agrees_with_the_engine_config(tmp_path: Path) -> None:
    from runtime.cli import context

    assert context.DEFAULT_ROOT == DEFAULT_ROOT
    assert Context(str(tmp_path)).socket_path == EngineConfig(str(tmp_path)).socket_path
    assert Context(str(tmp_path)).config == EngineConfig(str(tmp_path))


def test_run_imports_neither_asyncio_nor_the_engine() -> None:
    code = (
        "import sys, runtime.cli, runtime.cli.cmd_run, runtime.cli.stdio, runtime.cli.wire\n"
        "heavy = ['asyncio', 'dataclasses', 'shutil', 'runtime.client', 'runtime.config',\n"
        "         'runtime.container.model', 'runtime.image.store', 'runtime.oci.container',\n"
        "         'runtime.supervisor.engine', 'runtime.volumes']\n"
        "print([name for name in heavy if name in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (150, "2 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_durations_read_like_dockers(seconds: float, text: str) -> None:
    assert fmt.human_duration(seconds) == text


def test_statuses_read_like_dockers() -> None:
    running = {"Status": "running", "StartedAt": "2026-01-01T09:59:57.123456789Z"}
    exited = {"Status": "exited", "ExitCode": 137, "FinishedAt": "2026-01-01T09:58:00Z"}
    assert fmt.container_status(running, NOW) == "Up 2 seconds"
    assert fmt.container_status(exited, NOW) == "Exited (137) 2 minutes ago"
    assert fmt.container_status({"Status": "created"}, NOW) == "Created"
    assert fmt.ago("2026-01-01T07:00:00+00:00", NOW) == "3 hours ago"
    assert fmt.ago("", NOW) == "N/A"


def test_ps_quotes_and_truncates_the_command_like_docker() -> None:
    info = {
        "Id": "f" * 64,
        "Name": "/web",
        "Created": "2026-01-01T09:58:00Z",
        "Path": "sh",
        "Args": ["-c", 'while true; do echo "hi"; sleep 1; done'],
        "State": {"Status": "running", "StartedAt": "2026-01-01T09:59:30Z"},
        "Config": {"Image": "busybox", "Labels": {"b": "2", "a": "1"}},
    }
    row = ps_summary(info, now=NOW)
    assert row["ID"] == "f" * 12
    assert row["Command"] == '"sh -c while true; d…"'
    assert row["RunningFor"] == "2 minutes ago"
    assert row["Status"] == "Up 30 seconds"
    assert row["State"] == "running"
    assert row["Names"] == "web"
    assert row["Labels"] == "a=1,b=2"
    full = ps_summary(info, trunc=False, now=NOW)["Command"]
    assert json.loads(full) == 'sh -c while true; do echo "hi"; sleep 1; done'


def test_tables_align_like_gos_tabwriter() -> None:
    text = fmt.table(("CONTAINER ID", "IMAGE", "NAMES"), [["abc", "busybox:latest", "web"]])
    assert text.splitlines() == [
        "CONTAINER ID   IMAGE            NAMES",
        "abc            busybox:latest   web",
    ]


def test_sizes_read_like_dockers() -> None:
    assert fmt.human_size(4_261_000) == "4.26MB"
    assert fmt.human_size(124_000_000) == "124MB"
    assert fmt.human_size(999) == "999B"
    assert fmt.bytes_size(10 << 20) == "10MiB"
    assert fmt.bytes_size(1990 * 1024) == "1.943MiB"


# -- errors and exit statuses ---------------------------------------------------------------


def test_start_failures_map_to_126_and_127() -> None:
    not_found = ContainerRuntimeError('exec: "nope": executable file not found in $PATH')
    no_file = ContainerRuntimeError('exec: "/x": stat /x: no such file or directory')
    denied = ContainerRuntimeError('exec: "/etc/passwd": permission denied')
    assert start_failure_status(not_found) == 127
    assert start_failure_status(no_file) == 127
    assert start_failure_status(denied) == 126
    assert start_failure_status(ContainerRuntimeError("cgroup: EBUSY")) == 125


def test_error_lines_say_where_the_error_came_from() -> None:
    daemon = mark_from_daemon(ContainerRuntimeError("no such image: nope"))
    assert error_line(daemon) == "Error response from daemon: no such image: nope"
    assert error_line(InvalidArgument("size", "bad\nvalue")) == "Error: size: bad value"


# -- the stdio proxy ------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_frames_that_came_with_the_reply_line_are_not_left_waiting(
    capfd: pytest.CaptureFixture[str],
) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(
            protocol.dumps({"ok": True, "result": {"tty": False}})
            + protocol.frame(protocol.STDOUT, b"out\n")
            + protocol.frame(protocol.STDERR, b"err\n")
            + protocol.frame(protocol.EXIT, b"3")
        )
        channel = Channel(ours)
        assert json.loads(channel.readline())["ok"]
        proxy = Proxy(channel, stdin=False, tty=False)
        with proxy.installed():
            assert proxy.pump() == 3
    assert capfd.readouterr() == ("out\n", "err\n")


@pytest.mark.timeout(10)
def test_attach_detaches_at_the_end_of_stdin_once_the_scrollback_is_out(
    capfd: pytest.CaptureFixture[str],
) -> None:
    ours, theirs = socket.socketpair()
    read_end, write_end = os.pipe()
    os.close(write_end)
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        with ours, theirs:
            theirs.sendall(
                protocol.frame(protocol.STDOUT, b"scrollback\n")
                + protocol.frame(protocol.REPLAY_DONE, b"")
            )
            proxy = Proxy(Channel(ours), stdin=True, tty=False, detach_on_eof=True)
            with proxy.installed():
                assert proxy.pump() is None
            assert proxy.detached
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(read_end)
    assert capfd.readouterr().out == "scrollback\n"


# -- records --------------------------------------------------------------------------------


def test_records_tell_which_container_uses_an_image_or_a_volume() -> None:
    records: list[dict[str, Any]] = [
        {"id": "c1", "image_id": "sha256:aa", "mounts": [], "options": {"volumes": ["db:/var"]}},
        {
            "id": "c2",
            "image_id": "sha256:bb",
            "mounts": [{"source": "/r/volumes/anon/_data", "destination": "/d"}],
            "options": {"volumes": ["/d"]},
        },
    ]
    assert image_user(records, "sha256:bb") == "c2"
    assert image_user(records, "sha256:cc") is None
    assert volume_user(records, "db", "/r/volumes/db/_data") == "c1"
    assert volume_user(records, "anon", "/r/volumes/anon/_data") == "c2"
    assert volume_user(records, "free", "/r/volumes/free/_data") is None


# -- whole commands against a fake daemon ---------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[FakeEngine]:
    fake = FakeEngine(tmp_path / "root").start()
    try:
        yield fake
    finally:
        fake.close()


def cli(engine: FakeEngine, *argv: str) -> int:
    return main(["--root", str(engine.root), *argv])


def test_run_attaches_before_it_starts_and_exits_with_the_status(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli(engine, "run", "--rm", "busybox", "echo", "hello") == 0
    assert capfd.readouterr().out == "hello\n"
    assert engine.ops() == ["create", "attach", "start"]
    assert engine.requests[0]["options"]["auto_remove"] is True
    assert cli(engine, "run", "busybox", "fail", "3") == 3
    assert capfd.readouterr() == ("", "oops\n")


def test_run_exits_127_when_the_command_is_not_found(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli(engine, "run", "--rm", "busybox", "missing") == 127
    err = capfd.readouterr().err
    assert err.startswith("Error response from daemon: ") and err.count("\n") == 1
    assert "remove" in engine.ops()  # --rm cleans up what could not start


def test_run_detached_and_create_print_the_full_id(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    assert cli(engine, "run", "-d", "busybox", "sleep") == 0
    assert cli(engine, "create", "--name", "later", "busybox", "echo") == 0
    ids = capfd.readouterr().out.split()
    assert len(ids) == 2 and all(len(i) == 64 for i in ids)
    assert "attach" not in engine.ops()


def test_ps_inspect_stop_and_wait(engine: FakeEngine, capfd: pytest.CaptureFixture[str]) -> None:
    cli(engine, "run", "-d", "--name", "web", "busybox", "sleep")
    cli(engine, "create", "--name", "idle", "busybox", "echo")
    capfd.readouterr()
    assert cli(engine, "ps") == 0
    lines = capfd.readouterr().out.splitlines()
    headers = re.split(r"\s{3,}", lines[0])
    assert headers == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(lines) == 2 and lines[1].endswith("web") and '"sleep"' in lines[1]
    assert cli(engine, "ps", "-a", "--format", "json") == 0
    rows = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert {r["Names"]: r["State"] for r in rows} == {"web": "running", "idle": "created"}
    assert {"ID", "Image", "Command", "CreatedAt", "Status", "State", "Names"} <= set(rows[0])
    assert cli(engine, "inspect", "web", "nope") == 125
    out, err = capfd.readouterr()
    assert [c["Name"] for c in json.loads(out)] == ["/web"]
    assert "nope" in err
    assert cli(engine, "stop", "-t", "1", "web") == 0
    assert cli(engine, "wait", "web") == 0
    assert capfd.readouterr().out.split() == ["web", "143"]


def test_rm_of_a_running_container_needs_force(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    cli(engine, "run", "-d", "--name", "web", "busybox", "sleep")
    capfd.readouterr()
    assert cli(engine, "rm", "web") == 125
    assert capfd.readouterr().err.startswith("Error response from daemon: ")
    assert cli(engine, "rm", "-f", "web") == 0
    assert capfd.readouterr().out == "web\n"


def test_exec_exits_with_the_commands_status(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    cli(engine, "run", "-d", "--name", "web", "busybox", "sleep")
    capfd.readouterr()
    assert cli(engine, "exec", "web", "fail", "4") == 4
    assert capfd.readouterr().err == "oops\n"
    assert cli(engine, "exec", "-e", "A=1", "web", "echo", "hi") == 0
    assert capfd.readouterr().out == "hi\n"
    exec_request = [r for r in engine.requests if r["op"] == "exec_create"][-1]
    assert exec_request["env"] == ["A=1"] and exec_request["cmd"] == ["echo", "hi"]


def test_logs_keep_stdout_and_stderr_apart(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    cli(engine, "run", "--name", "job", "busybox", "fail", "1")
    capfd.readouterr()
    assert cli(engine, "logs", "--tail", "5", "job") == 0
    assert capfd.readouterr() == ("", "oops\n")
    assert [r.get("tail") for r in engine.requests if r["op"] == "logs"] == [5]


def test_stats_reads_cpu_from_two_samples(
    engine: FakeEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    cli(engine, "run", "-d", "--name", "web", "busybox", "sleep")
    capfd.readouterr()
    assert cli(engine, "stats", "--no-stream", "--format", "json") == 0
    (row,) = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert row["Name"] == "web" and row["PIDs"] == "2"
    assert row["MemUsage"] == "10MiB / 100MiB" and row["MemPerc"] == "10.00%"
    assert 1.0 < float(row["CPUPerc"].rstrip("%")) < 20.0  # 50 ms of CPU in ~0.5 s


def test_stdin_reaches_the_container_and_its_end_closes_it(engine: FakeEngine) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "--root",
            str(engine.root),
            *("run", "-i", "busybox", "cat"),
        ],
        cwd=REPO,
        input=b"line one\nline two\n",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, b"line one\nline two\n")


def test_a_missing_daemon_is_started_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    started: list[FakeEngine] = []

    class Running:
        returncode = None

        def poll(self) -> None:
            return None

    def spawn(self: Context) -> Running:
        started.append(FakeEngine(Path(self.root)).start())
        return Running()

    monkeypatch.setattr(Context, "_spawn_daemon", spawn)
    try:
        assert main(["--root", str(root), "ps", "-q"]) == 0
        assert main(["--root", str(root), "ps", "-q"]) == 0
    finally:
        for fake in started:
            fake.close()
    assert len(started) == 1
    assert capfd.readouterr().out == ""


def test_a_daemon_that_will_not_start_is_a_125(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    class Exited:
        returncode = 1

        def poll(self) -> int:
            return 1

    monkeypatch.setattr(Context, "_spawn_daemon", lambda self: Exited())
    assert main(["--root", str(tmp_path), "ps"]) == 125
    err = capfd.readouterr().err
    assert err.startswith("Error: engine daemon at ") and "daemon.log" in err
