"""The site for the benchmarks: a redis-server, an engine daemon (busybox bootstrapped) and
daphne, each on this machine only, started and stopped by PID; and a small HTTP + WebSocket
client that does what the lab page does."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.engine_fixtures import running_engine  # noqa: E402
from tests.site_fixtures import (  # noqa: E402
    free_port,
    running_daphne,
    site_env,
    spawn,
    stop,
    wait_for_port,
)


@dataclass
class Site:
    host: str
    port: int
    engine_socket: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def site_stack(*daemon_flags: str, **extra_env: str) -> Iterator[Site]:
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        directory = Path(tmp)
        redis_port = free_port()
        redis = spawn(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            directory / "redis.log",
        )  # fmt: skip
        try:
            wait_for_port(redis_port, redis, directory / "redis.log", 10)
            with running_engine(directory / "engine", *daemon_flags) as engine:
                env = {
                    **site_env(
                        database=str(directory / "db.sqlite3"),
                        redis_url=f"redis://127.0.0.1:{redis_port}/0",
                        engine_socket=engine.socket_path,
                    ),
                    "PLAYGROUND_VAR_DIR": str(directory),
                    "PLAYGROUND_LOG_LEVEL": "WARNING",
                    **extra_env,
                }
                with running_daphne(env, directory) as port:
                    yield Site("127.0.0.1", port, engine.socket_path)
        finally:
            stop(redis)


@dataclass
class Browser:
    """Cookies and one keep-alive HTTP connection, like a browser tab."""

    site: Site
    cookies: dict[str, str] = field(default_factory=dict)
    conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict[str, str] | None = None) -> Any:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.site.host, self.site.port, timeout=30)
        headers = {"Cookie": self.cookie_header(), "Origin": self.site.origin}
        data = None
        if body is not None:
            body = {**body, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}
            data = "&".join(f"{k}={v}" for k, v in body.items())
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected):
            self.conn.close()  # daphne closed the idle keep-alive connection: reconnect
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        content = response.read()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response.status, response.headers, content

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def start_lab(self) -> tuple[str, list[str]]:
        """POST the start form, then load the lab page (as the redirect does): the lab's
        path and its terminals' WebSocket paths."""
        status, headers, _ = self.request("POST", "/labs/new", {"image": "busybox"})
        if status != 302:
            raise RuntimeError(f"starting a lab answered {status}")
        lab_path = headers["Location"]
        status, _, page = self.request("GET", lab_path)
        config = re.search(rb'id="lab-config" type="application/json">(.*?)</script>', page)
        if status != 200 or config is None:
            raise RuntimeError(f"the lab page answered {status}")
        return lab_path, [i["ws"] for i in json.loads(config[1])["instances"]]

    def end_lab(self, lab_path: str) -> None:
        self.request("POST", lab_path + "end", {})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, samples_ms: list[float]) -> str:
    return (
        f"{name}: p50 {percentile(samples_ms, 50):.2f} ms, p99 {percentile(samples_ms, 99):.2f} ms"
        f" (n={len(samples_ms)})"
    )


def now() -> float:
    return time.perf_counter()
