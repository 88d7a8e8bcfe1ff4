"""A fake engine daemon for CLI tests: the real wire protocol on a unix socket, served from
threads, with scripted "programs" instead of containers.

Programs (the container's command): ``echo ARGS`` prints them; ``fail CODE`` prints "oops" to
stderr and exits CODE; ``cat`` echoes stdin until it is closed; ``sleep`` runs until killed;
``missing`` cannot start ("executable file not found"). Every request is kept in
``requests``, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from runtime import errors
from runtime.supervisor import protocol

STARTED_AT = "2026-01-01T10:00:00.000000Z"


class FakeContainer:
    def __init__(self, options: dict[str, Any]) -> None:
        self.id = secrets.token_hex(32)
        self.options = options
        self.name = options.get("name") or f"fake_{self.id[:6]}"
        self.args = list(options.get("cmd") or ["echo"])
        self.status = "created"
        self.exit_code = 0
        self.started = threading.Event()
        self.exited = threading.Event()
        self.killed: int | None = None
        self.attached = False
        self.log: list[tuple[int, bytes]] = []

    def inspect(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Created": STARTED_AT,
            "Path": self.args[0],
            "Args": self.args[1:],
            "Image": "sha256:" + "ab" * 32,
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "Pid": 4242 if self.status == "running" else 0,
                "ExitCode": self.exit_code,
                "OOMKilled": False,
                "StartedAt": STARTED_AT if self.status != "created" else "",
                "FinishedAt": STARTED_AT if self.status == "exited" else "",
            },
            "Config": {
                "Image": self.options["image"],
                "Tty": bool(self.options.get("tty")),
                "Labels": dict(self.options.get("labels") or []),
            },
            "HostConfig": {"NetworkMode": "none", "AutoRemove": self.options.get("auto_remove")},
            "Mounts": [],
        }


class FakeEngine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket_path = str(root / "engine.sock")
        self.containers: dict[str, FakeContainer] = {}
        self.requests: list[dict[str, Any]] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._closed = False

    def start(self) -> FakeEngine:
        self.root.mkdir(parents=True, exist_ok=True)
        self._server.bind(self.socket_path)
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        for container in self.containers.values():
            container.killed = container.killed or 9

    def ops(self) -> list[str]:
        return [str(r["op"]) for r in self.requests]

    # -- serving --------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            reader = conn.makefile("rb")
            request = json.loads(reader.readline())
            self.requests.append(request)
            op = request["op"]
            try:
                if op in ("attach", "logs"):
                    getattr(self, f"stream_{op}")(request, conn, reader)
                    return
                result = getattr(self, f"op_{op}")(request)
                conn.sendall(protocol.dumps({"ok": True, "result": result}))
            except errors.ContainerRuntimeError as exc:
                conn.sendall(protocol.dumps(protocol.error_reply(exc)))

    def _find(self, ref: str) -> FakeContainer:
        for container in self.containers.values():
            if container.id.startswith(ref) or container.name == ref:
                return container
        raise errors.ContainerNotFound(ref)

    # -- plain operations -----------------------------------------------------------------

    def op_ping(self, req: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "root": str(self.root)}

    def op_create(self, req: dict[str, Any]) -> Any:
        container = FakeContainer(req["options"])
        self.containers[container.id] = container
        return container.inspect()

    def op_start(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        if container.args[0] == "missing":
            raise errors.ContainerRuntimeError(
                f'container {container.id}: exec: "missing": executable file not found in $PATH'
            )
        container.status = "running"
        container.started.set()
        if not container.attached:
            threading.Thread(target=self._run, args=(container, None, None), daemon=True).start()
        return container.inspect()

    def op_inspect(self, req: dict[str, Any]) -> Any:
        return self._find(req["id"]).inspect()

    def op_list(self, req: dict[str, Any]) -> Any:
        found = [c.inspect() for c in self.containers.values()]
        return found if req.get("all") else [c for c in found if c["State"]["Running"]]

    def op_wait(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        container.exited.wait(10)
        return container.exit_code

    def op_kill(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        if container.status != "running":
            raise errors.InvalidTransition(container.id, container.status, "kill")
        signal = req.get("signal", 9)
        container.killed = int(signal) if str(signal).isdigit() else 15

    def op_stop(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        if container.status == "running":
            container.killed = 15
            container.exited.wait(10)

    def op_remove(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        if container.status == "running" and not req.get("force"):
            raise errors.InvalidArgument(
                "rm", f"cannot remove container {container.id[:12]}: container is running"
            )
        container.killed = 9
        del self.containers[container.id]
        return container.id

    def op_stats(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        calls = sum(1 for r in self.requests if r["op"] == "stats")
        return {
            "id": container.id,
            "name": container.name,
            "cpu_usage_ns": calls * 50_000_000,
            "memory_usage": 10 << 20,
            "memory_limit": 100 << 20,
            "pids_current": 2,
            "pids_limit": None,
            "oom_kill_count": 0,
        }

    def op_exec_create(self, req: dict[str, Any]) -> Any:
        container = self._find(req["id"])
        if container.status != "running":
            raise errors.InvalidTransition(container.id, container.status, "exec in")
        exec_container = FakeContainer({"image": "exec", "cmd": req["cmd"]})
        exec_container.status = "running"
        exec_container.attached = True
        exec_container.started.set()
        self.containers[f"exec-{exec_container.id}"] = exec_container
        return {"exec_id": exec_container.id}

    def op_gc(self, req: dict[str, Any]) -> Any:
        return {"containers": ["deadbeef"], "cgroups": [], "images": {"layers": 0}}

    # -- streams --------------------------------------------------------------------------

    def stream_attach(self, req: dict[str, Any], conn: socket.socket, reader: Any) -> None:
        if req.get("exec_id"):
            container = self.containers[f"exec-{req['exec_id']}"]
        else:
            container = self._find(req["id"])
        conn.sendall(protocol.dumps({"ok": True, "result": {"tty": container.options.get("tty")}}))
        conn.sendall(protocol.frame(protocol.REPLAY_DONE, b""))
        container.attached = True
        if container.started.wait(10):
            self._run(container, conn, reader)

    def _run(self, container: FakeContainer, conn: socket.socket | None, reader: Any) -> None:
        code = self._program(container, conn, reader)
        container.exit_code = code
        container.status = "exited"
        container.exited.set()
        if conn is not None:
            conn.sendall(protocol.frame(protocol.EXIT, str(code).encode()))

    def _program(self, container: FakeContainer, conn: socket.socket | None, reader: Any) -> int:
        name, args = container.args[0], container.args[1:]

        def out(kind: int, data: bytes) -> None:
            container.log.append((kind, data))
            if conn is not None:
                conn.sendall(protocol.frame(kind, data))

        if name == "echo":
            out(protocol.STDOUT, (" ".join(args) + "\n").encode())
            return 0
        if name == "fail":
            out(protocol.STDERR, b"oops\n")
            return int(args[0])
        if name == "cat" and reader is not None:
            while True:
                kind, size = protocol.HEADER.unpack(reader.read(protocol.HEADER.size))
                payload = reader.read(size)
                if kind == protocol.CLOSE_STDIN:
                    return 0
                if kind == protocol.STDIN:
                    out(protocol.STDOUT, payload)
        while container.killed is None:  # sleep
            threading.Event().wait(0.01)
        return 128 + container.killed

    def stream_logs(self, req: dict[str, Any], conn: socket.socket, reader: Any) -> None:
        container = self._find(req["id"])
        conn.sendall(protocol.dumps({"ok": True, "result": {"tty": False}}))
        for kind, data in container.log:
            conn.sendall(protocol.frame(kind, data))
        conn.sendall(protocol.frame(protocol.EXIT, b""))
