"""The keeper: one small, long-lived process per engine root that owns the containers'
processes and terminals, as conmon does for each container.

It forks every container (so it is their parent and reaps them), holds their PTY masters
and stdio pipes, and records exit statuses in files. The daemon talks to it over a unix
socket and gets duplicates of those descriptors with SCM_RIGHTS. When the daemon is killed,
the keeper keeps every terminal open; a restarted daemon asks for them again.

Protocol: SOCK_SEQPACKET, one JSON object per packet; replies may carry descriptors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from runtime import linux
from runtime.errors import ContainerRuntimeError
from runtime.oci import terminal
from runtime.oci.container import Runtime, Stdio, exit_status

logger = logging.getLogger(__name__)

MAX_PACKET = 1 << 20


@dataclass
class Kept:
    """One process the keeper owns: a container's init or an exec'd process."""

    key: str
    pid: int = 0
    fds: list[int] = field(default_factory=list)
    exit_file: str = ""
    exit_code: int | None = None


class Keeper:
    def __init__(self, root: str, oci_root: str) -> None:
        self.root = root
        self.runtime = Runtime(oci_root)
        self.kept: dict[str, Kept] = {}
        self.by_pid: dict[int, Kept] = {}
        self.sel = selectors.DefaultSelector()
        self.clients: list[socket.socket] = []

    # -- requests ---------------------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            return {"ok": False, "error": f"unknown operation {op!r}"}, []
        try:
            result, fds = handler(request)
        except ContainerRuntimeError as exc:
            return {"ok": False, "error": str(exc), "type": type(exc).__name__}, []
        except OSError as exc:
            return {"ok": False, "error": f"{op}: {exc}"}, []
        return {"ok": True, **result}, fds

    def _stdio(self, tty: bool) -> tuple[Stdio, list[int], list[int], socket.socket | None]:
        """(stdio for the runtime, our ends, their ends to close, console socket)."""
        if tty:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            return Stdio(console=theirs), [], [], ours
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        return Stdio(fds=(in_r, out_w, err_w)), [in_w, out_r, err_r], [in_r, out_w, err_w], None

    def op_create(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        cid = req["id"]
        stdio, ours, theirs, console = self._stdio(bool(req.get("tty")))
        try:
            st = self.runtime.create(cid, req["bundle"], stdio=stdio)
            if console is not None:
                ours = [terminal.recv_master(console)]
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
            if console is not None:
                console.close()
            if stdio.console is not None:
                stdio.console.close()
        self._keep(cid, st.pid, ours, req.get("exit_file", ""))
        return {"pid": st.pid}, ours

    def op_exec(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        cid = req["id"]
        key = f"{cid}/exec/{req['exec_id']}"
        process = req["process"]
        stdio, ours, theirs, console = self._stdio(bool(process.get("terminal")))
        pid_file = os.path.join(self.root, "tmp", f"exec-{req['exec_id']}.pid")
        os.makedirs(os.path.dirname(pid_file), exist_ok=True)
        try:
            self.runtime.exec(cid, process, stdio=stdio, detach=True, pid_file=pid_file)
            if console is not None:
                ours = [terminal.recv_master(console)]
            with open(pid_file) as f:
                pid = int(f.read())
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_file)
            for fd in theirs:
                os.close(fd)
            for sock in (console, stdio.console):
                if sock is not None:
                    sock.close()
        self._keep(key, pid, ours, req.get("exit_file", ""))
        return {"pid": pid}, ours

    def _keep(self, key: str, pid: int, fds: list[int], exit_file: str) -> None:
        old = self.kept.pop(key, None)
        if old is not None:
            self._close(old)
        kept = Kept(key, pid, list(fds), exit_file)
        self.kept[key] = kept
        self.by_pid[pid] = kept

    def op_start(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        self.runtime.start(req["id"])
        return {}, []

    def op_kill(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        self.runtime.kill(req["id"], int(req["signal"]))
        return {}, []

    def op_delete(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        cid = req["id"]
        with contextlib.suppress(ContainerRuntimeError):
            self.runtime.delete(cid, force=True)
        for key in [k for k in self.kept if k == cid or k.startswith(f"{cid}/")]:
            self._close(self.kept.pop(key))
        return {}, []

    def op_release(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        kept = self.kept.pop(req["key"], None)
        if kept is not None:
            self._close(kept)
        return {}, []

    def op_close_stdin(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """Close our copy of a process's stdin pipe (the daemon closed its own), keeping a
        dead pipe end in its place so the descriptor list keeps its shape."""
        kept = self.kept.get(req["key"])
        if kept is not None and len(kept.fds) == 3:
            dead_r, dead_w = os.pipe2(os.O_CLOEXEC)
            os.close(dead_r)
            with contextlib.suppress(OSError):
                os.close(kept.fds[0])
            kept.fds[0] = dead_w
        return {}, []

    def op_list(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        items = []
        for kept in self.kept.values():
            items.append({"key": kept.key, "pid": kept.pid, "exit_code": kept.exit_code})
        return {"items": items}, []

    def op_fds(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        kept = self.kept.get(req["key"])
        if kept is None:
            return {"fds": 0}, []
        return {"fds": len(kept.fds), "pid": kept.pid, "exit_code": kept.exit_code}, kept.fds

    def op_ping(self, req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        return {"pid": os.getpid()}, []

    def _close(self, kept: Kept) -> None:
        for fd in kept.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        kept.fds = []
        self.by_pid.pop(kept.pid, None)

    # -- reaping ----------------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            kept = self.by_pid.get(pid)
            if kept is None:
                continue
            kept.exit_code = exit_status(status)
            if kept.exit_file:
                _write_exit(kept.exit_file, kept.exit_code)
            self._notify({"event": "exit", "key": kept.key, "exit_code": kept.exit_code})

    def _notify(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        for client in list(self.clients):
            try:
                client.send(data)
            except OSError:
                self._drop(client)

    # -- loop ---------------------------------------------------------------------------------

    def serve(self, path: str) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(8)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in self.sel.select(timeout=5.0):
                self._dispatch(key, listener, wake_r)
            self.reap()

    def _dispatch(self, key: selectors.SelectorKey, listener: socket.socket, wake_r: int) -> None:
        if key.data == "listen":
            conn, _ = listener.accept()
            conn.setblocking(True)
            self.clients.append(conn)
            self.sel.register(conn, selectors.EVENT_READ, "client")
        elif key.data == "wake":
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        elif isinstance(key.fileobj, socket.socket):
            self._serve_one(key.fileobj)

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            raw = conn.recv(MAX_PACKET)
        except OSError:
            raw = b""
        if not raw:
            self._drop(conn)
            return
        try:
            request = json.loads(raw)
            reply, fds = self.handle(request)
            reply["seq"] = request.get("seq")
            socket.send_fds(conn, [json.dumps(reply).encode()], fds)
        except (OSError, ValueError) as exc:
            logger.warning("keeper request failed: %s", exc)
            self._drop(conn)

    def _drop(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(conn)
        with contextlib.suppress(ValueError):
            self.clients.remove(conn)
        conn.close()


def _write_exit(path: str, code: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"exit_code": code, "time": time.time()}, f)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.supervisor.keeper")
    parser.add_argument("--root", required=True)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s keeper %(levelname)s %(name)s: %(message)s",
    )
    from runtime.oci import selfexe

    selfexe.reexec_sealed()
    linux.set_child_subreaper()
    keeper = Keeper(args.root, os.path.join(args.root, "oci"))
    keeper.serve(os.path.join(args.root, "keeper.sock"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
