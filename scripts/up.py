#!/usr/bin/env python3
"""`make up`: the whole site on one machine, in the foreground.

Prepares var/ (SQLite database, secret key, admin account, images), then starts and watches
its own processes: redis-server on 127.0.0.1:6390 (data in var/redis), the engine daemon
(root var/engine), a Celery worker with beat, and daphne on http://127.0.0.1:8000. Ctrl+C
(or SIGTERM) stops exactly these processes, by PID, newest first; so does the death of any
one of them. Containers keep running in the engine's keeper, so labs survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PYTHON = sys.executable
HOST = "127.0.0.1"
PORT = int(os.environ.get("PLAYGROUND_PORT", "8000"))
REDIS_PORT = int(os.environ.get("PLAYGROUND_REDIS_PORT", "6390"))
ENGINE_ROOT = VAR / "engine"


def say(text: str) -> None:
    print(f"[up] {text}", flush=True)


def secret_key_file() -> Path:
    path = VAR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path


def site_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PLAYGROUND_SECRET_KEY_FILE", str(secret_key_file()))
    env.setdefault("PLAYGROUND_REDIS_URL", f"redis://{HOST}:{REDIS_PORT}/0")
    env.setdefault("PLAYGROUND_ENGINE_SOCKET", str(ENGINE_ROOT / "engine.sock"))
    env.setdefault("PLAYGROUND_VAR_DIR", str(VAR))
    env.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")
    return env


def run(*cmd: str, env: dict[str, str]) -> None:
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdin=subprocess.DEVNULL)


def wait_for(check: str, ready: object, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[up] {check} exited with status {proc.returncode}: see var/log/")
        if callable(ready) and ready():
            return
        time.sleep(0.1)
    raise SystemExit(f"[up] {check} did not come up in {timeout:.0f} s: see var/log/")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
        return True
    return False


def socket_answers(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1)
        sock.connect(str(path))
        sock.sendall(b'{"op":"ping"}\n')
        return bool(sock.recv(100))
    return False


def has_image(name: str, env: dict[str, str]) -> bool:
    listing = subprocess.run(
        [PYTHON, "-m", "runtime", "--root", str(ENGINE_ROOT), "images"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return any(line.split()[:1] == [name] for line in listing.stdout.splitlines()[1:])


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        (VAR / "log").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *cmd: str) -> subprocess.Popen[bytes]:
        with open(VAR / "log" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C reaches us only; we stop each one
            )
        self.procs.append((name, proc))
        say(f"started {name} (pid {proc.pid}), log in var/log/{name}.log")
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} (pid {proc.pid}) did not stop: killing it")
                proc.kill()
                proc.wait()
        self.procs.clear()

    def watch(self, *, one_shot: tuple[str, ...] = ()) -> None:
        """Until a process exits; those named in ``one_shot`` may finish, and are reported."""
        while True:
            for name, proc in list(self.procs):
                code = proc.poll()
                if code is None:
                    continue
                if name not in one_shot:
                    say(f"{name} exited with status {code}: stopping everything")
                    return
                say(f"{name} finished" if code == 0 else f"{name} failed ({code}): see its log")
                self.procs.remove((name, proc))
            time.sleep(0.5)


def prepare(env: dict[str, str]) -> None:
    for sub in ("redis", "engine", "log"):
        (VAR / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(ENGINE_ROOT, 0o700)
    say("migrating the database (var/db.sqlite3)")
    run(PYTHON, "manage.py", "migrate", "--noinput", "-v", "0", env=env)
    run(PYTHON, "manage.py", "ensure_admin", env=env)
    if not has_image("busybox", env):
        say("bootstrapping the busybox image")
        run(PYTHON, "-m", "runtime", "--root", str(ENGINE_ROOT), "bootstrap", "busybox", env=env)


def main() -> int:
    env = site_env()
    prepare(env)
    sup = Supervisor(env)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Set both: a shell that starts us in the background makes us ignore SIGINT otherwise.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        redis = sup.start(
            "redis",
            "redis-server",
            "--port", str(REDIS_PORT),
            "--bind", HOST,
            "--dir", str(VAR / "redis"),
            "--save", "300 1",
            "--appendonly", "no",
        )  # fmt: skip
        wait_for("redis-server", lambda: port_open(REDIS_PORT), redis, 15)
        engine = sup.start("engine", PYTHON, "-m", "runtime", "--root", str(ENGINE_ROOT), "daemon")
        wait_for("the engine", lambda: socket_answers(ENGINE_ROOT / "engine.sock"), engine, 30)
        if not has_image("debian", env):
            say("bootstrapping the debian image in the background (var/log/bootstrap.log)")
            sup.start(
                "bootstrap", PYTHON, "-m", "runtime", "--root", str(ENGINE_ROOT),
                "bootstrap", "debian",
            )  # fmt: skip
        sup.start(
            "celery",
            PYTHON, "-m", "celery", "-A", "playground", "worker", "--beat",
            # prefork: time limits are enforced, and a long pull never holds up expiry.
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
            "--schedule", str(VAR / "celerybeat-schedule"),
        )  # fmt: skip
        daphne = sup.start(
            "daphne", PYTHON, "-m", "daphne", "-b", HOST, "-p", str(PORT),
            "playground.asgi:application",
        )  # fmt: skip
        wait_for("daphne", lambda: port_open(PORT), daphne, 30)
        say(f"Playground is up: http://{HOST}:{PORT}/  (Ctrl+C stops it)")
        sup.watch(one_shot=("bootstrap",))
    except KeyboardInterrupt:
        print()
        say("stopping")
    finally:
        sup.stop_all()
        say("stopped; containers keep running in the engine (see README)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
