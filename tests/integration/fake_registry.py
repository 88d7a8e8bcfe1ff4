"""A small registry that misbehaves on purpose, on 127.0.0.1, in a thread of the test.

It serves manifests and blobs from memory and records every request. ``blob_modes`` makes
a blob's GET lie: a wrong body, a wrong length, a truncated or stalled body, 500s first.
``token_mode`` puts a bearer-token service in front of it, well-behaved or looping.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.integration.oci_layouts import Built


@dataclass
class FakeRegistry:
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # ref -> body, type
    blobs: dict[str, bytes] = field(default_factory=dict)
    blob_modes: dict[str, str] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # path -> 500s still to send
    token_mode: str | None = None  # None, "ok", "redirect", "useless"
    delay: float = 0.0  # seconds before each blob body
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_image(self, repo: str, tag: str, built: Built) -> None:
        media_type = "application/vnd.oci.image.manifest.v1+json"
        self.manifests[f"{repo}:{tag}"] = (built.manifest, media_type)
        self.manifests[f"{repo}:{built.digest}"] = (built.manifest, media_type)
        self.blobs[_digest(built.config)] = built.config
        for layer in built.layers:
            self.blobs[layer.digest] = layer.blob

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, path, _ in self.requests if m == method and re.search(pattern, path))


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


_MANIFEST = re.compile(r"/v2/(.+)/manifests/([^/]+)")
_BLOB = re.compile(r"/v2/(.+)/blobs/(sha256:[0-9a-f]{64})")


def make_handler(fake: FakeRegistry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, dict(self.headers)))
            if self.path.startswith("/token"):
                return self._token()
            if not self._authorized():
                return
            left = fake.failures.get(self.path, 0)
            if left:
                fake.failures[self.path] = left - 1
                return self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}')
            if self.path == "/v2/":
                return self._send(200, b"{}")
            if match := _MANIFEST.fullmatch(self.path):
                return self._manifest(f"{match.group(1)}:{match.group(2)}")
            if match := _BLOB.fullmatch(self.path):
                return self._blob(match.group(2))
            self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')

        def _authorized(self) -> bool:
            if fake.token_mode is None:
                return True
            given = self.headers.get("Authorization", "")
            if given == "Bearer good-token" and fake.token_mode == "ok":
                return True
            if self.path == "/v2/" or fake.token_mode != "ok" or not given:
                challenge = (
                    f'Bearer realm="http://{fake.host}/token",service="fake",'
                    f'scope="repository:test/img:pull"'
                )
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}', challenge)
                return False
            return True

        def _token(self) -> None:
            if fake.token_mode == "redirect":
                self.send_response(302)
                self.send_header("Location", "/token?again=1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(200, b'{"token": "good-token", "expires_in": 300}')

        def _manifest(self, key: str) -> None:
            found = fake.manifests.get(key)
            if found is None:
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}')
            body, media_type = found
            self._send(200, body, content_type=media_type)

        def _blob(self, digest: str) -> None:
            body = fake.blobs.get(digest)
            if body is None:
                return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"x"}]}')
            if fake.delay:
                time.sleep(fake.delay)
            mode = fake.blob_modes.get(digest, "")
            start = _range_start(self.headers.get("Range"))
            if mode == "wrong-digest":
                body = bytes(len(body))
            elif mode == "long":
                body += b"x" * 100
            elif mode == "short":
                body = body[: len(body) // 2]
            elif mode in ("truncate", "truncate-once", "stall"):
                return self._broken(body, mode, start)
            if start and mode == "":
                return self._partial(body, start)
            self._send(200, body, content_type="application/octet-stream")

        def _broken(self, body: bytes, mode: str, start: int) -> None:
            if mode == "truncate-once" and start:
                fake.blob_modes.pop(_BLOB.fullmatch(self.path).group(2))  # type: ignore[union-attr]
                return self._partial(body, start)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode == "stall":
                fake.stop.wait(10)
            self.close_connection = True

        def _partial(self, body: bytes, start: int) -> None:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def _send(
            self,
            status: int,
            body: bytes,
            challenge: str | None = None,
            content_type: str = "application/json",
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match.group(1)) if match else 0


@contextlib.contextmanager
def run_fake_registry(fake: FakeRegistry) -> Iterator[FakeRegistry]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
