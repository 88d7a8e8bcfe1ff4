"""Registry servers for the tests, all on 127.0.0.1 and stopped by the fixtures: Debian's
``docker-registry`` (plain, TLS with htpasswd, or token auth), a token endpoint issuing
RS256 JWTs, certificates, and ``skopeo``."""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REGISTRY_BIN = "/usr/bin/docker-registry"
SKOPEO = "/usr/bin/skopeo"
HTPASSWD = "/usr/bin/htpasswd"
USER, PASSWORD = "tester", "s3cret-Pa55word"
SERVICE, ISSUER = "test-registry", "test-issuer"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its pid: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


# -- certificates ---------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    key: rsa.RSAPrivateKey
    cert_der: bytes


def make_pki(directory: Path, common_name: str = "127.0.0.1") -> Pki:
    """A CA, and a certificate it signed for 127.0.0.1 (also usable to sign tokens)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "playground test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
        key,
        cert.public_bytes(serialization.Encoding.DER),
    )
    pki.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return pki


# -- docker-registry ------------------------------------------------------------------


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    tls: bool = False
    ca_pem: Path | None = None


def registry_config(
    directory: Path, port: int, *, pki: Pki | None = None, auth: dict[str, Any] | None = None
) -> Path:
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex}
    if pki is not None:
        http["tls"] = {"certificate": str(pki.cert_pem), "key": str(pki.key_pem)}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
    }
    if auth is not None:
        config["auth"] = auth
    path = directory / "config.yml"
    path.write_text(json.dumps(config))  # YAML is a superset of JSON
    return path


@contextlib.contextmanager
def run_registry(
    directory: Path, *, pki: Pki | None = None, auth: dict[str, Any] | None = None
) -> Iterator[Registry]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = registry_config(directory, port, pki=pki, auth=auth)
    log = open(directory / "registry.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, process)
        yield Registry(f"127.0.0.1:{port}", process, pki is not None, pki.ca_pem if pki else None)
    finally:
        stop_process(process)
        log.close()


def htpasswd_file(directory: Path) -> Path:
    path = directory / "htpasswd"
    line = subprocess.run(
        [HTPASSWD, "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    path.write_text(line + "\n")
    return path


def skopeo_copy(source: str, dest: str, *args: str) -> None:
    result = subprocess.run(
        [SKOPEO, "--insecure-policy", "copy", "--quiet", *args, source, dest],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"skopeo copy {source} {dest}: {result.stderr}")


def skopeo_raw(source: str) -> bytes:
    """The manifest exactly as the registry serves it."""
    result = subprocess.run(
        [SKOPEO, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", source],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"skopeo inspect {source}: {result.stderr.decode()}")
    return result.stdout


# -- a token endpoint -----------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues JWTs as distribution's token auth wants them: RS256, with the signing
    certificate in ``x5c``. Anonymous callers get pull on ``public/*``; ``USER`` gets what
    it asks for."""

    pki: Pki
    port: int = 0
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"]
            if not user and not name.startswith("public/"):
                granted = []
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.pki.cert_der).decode()],
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.pki.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def auth_config(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.pki.cert_pem),
            }
        }


@contextlib.contextmanager
def run_token_server(pki: Pki) -> Iterator[TokenServer]:
    token_server = TokenServer(pki)

    class Handler(http.server.BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            token_server.requests.append(query)
            user = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                given = base64.b64decode(header[6:]).decode()
                if given != f"{USER}:{PASSWORD}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                user = USER
            body = json.dumps(
                {"token": token_server.issue(user, query.get("scope", [])), "expires_in": 300}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    token_server.port = server.server_address[1]
    token_server.server = server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield token_server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
