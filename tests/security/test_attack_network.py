"""Network attacks: the host's services (loopback and its own addresses, TCP and abstract unix
sockets), the cloud metadata address, other containers, IPv4 and IPv6 alike.

Containers get a network namespace with only `lo`. Nothing here sends a packet beyond the
host: the host's listeners are local, and the metadata address is only tried when the
container has no route at all (from such a namespace connect() fails with ENETUNREACH
before anything is sent).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.security.attack import Attacker

pytestmark = pytest.mark.root

METADATA_V4 = "169.254.169.254"
METADATA_V6 = "fd00:ec2::254"


def _host_addresses() -> list[tuple[int, str]]:
    """The host's own non-loopback addresses (link-local ones need a scope: left out)."""
    try:
        done = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    found = []
    for link in json.loads(done.stdout):
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                family = socket.AF_INET if info["family"] == "inet" else socket.AF_INET6
                found.append((family, info["local"]))
    return found


@dataclass
class Listener:
    """A host TCP (or abstract unix) listener that records every connection it accepts."""

    name: str
    sock: socket.socket
    address: str = ""
    port: int = 0
    accepted: list[object] = field(default_factory=list)

    def serve(self, stop: threading.Event) -> None:
        self.sock.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, peer = self.sock.accept()
                self.accepted.append(peer)
                conn.close()


def _tcp(name: str, family: int, address: str) -> Listener:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if address == "::" else 1)
    sock.bind((address, 0))
    sock.listen(16)
    return Listener(name, sock, address, sock.getsockname()[1])


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, Listener]]:
    found = {
        "lo4": _tcp("lo4", socket.AF_INET, "127.0.0.1"),
        "lo6": _tcp("lo6", socket.AF_INET6, "::1"),
        "any": _tcp("any", socket.AF_INET6, "::"),  # every address, both families
    }
    for family, address in _host_addresses():
        key = "host4" if family == socket.AF_INET else "host6"
        found.setdefault(key, _tcp(key, family, address))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"pg-security-{os.getpid()}"
    abstract.bind("\0" + name)
    abstract.listen(16)
    found["abstract"] = Listener("abstract", abstract, name)
    stop = threading.Event()
    threads = [
        threading.Thread(target=lis.serve, args=(stop,), daemon=True) for lis in found.values()
    ]
    for thread in threads:
        thread.start()
    yield found
    stop.set()
    for thread in threads:
        thread.join(2)
    for lis in found.values():
        lis.sock.close()


def _script(found: dict[str, Listener]) -> str:
    lines = []
    for key, lis in found.items():
        if key == "abstract":
            lines.append(f"/probe/probe abstract {lis.address} | sed 's/^/abstract_/'")
            continue
        targets = [lis.address] if lis.address not in ("::",) else ["127.0.0.1", "::1"]
        for n, address in enumerate(targets):
            lines.append(f"/probe/probe connect {address} {lis.port} | sed 's/^/{key}{n}_/'")
            if ":" not in address:
                mapped = f"::ffff:{address}"
                lines.append(f"/probe/probe connect {mapped} {lis.port} | sed 's/^/{key}{n}m_/'")
    for key in ("host4", "host6"):
        if key in found:
            lines.append(f"/probe/probe connect {found[key].address} 22 | sed 's/^/{key}ssh_/'")
    lines += [
        "echo links=$(ip -o link | wc -l)",
        "echo routes4=$(ip -4 route | wc -l)",
        "echo routes6=$(ip -6 route | grep -vc '^\\(::1\\|fe80\\|local\\|multicast\\|anycast\\)')",
        # the metadata addresses: only from a namespace without routes (see the docstring)
        'if [ -z "$(ip -4 route)" ]; then',
        f"  /probe/probe connect {METADATA_V4} 80 | sed 's/^/metadata4_/'",
        f"  /probe/probe connect {METADATA_V6} 80 | sed 's/^/metadata6_/'",
        "else echo metadata4_connect=ROUTED; echo metadata6_connect=ROUTED; fi",
        "echo resolv=$(wc -c < /etc/resolv.conf)",
        "echo engine_socket=$(ls / | grep -c sock)",
        "echo done=1",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def got(attacker: Attacker, listeners: dict[str, Listener]) -> dict[str, str]:
    started = time.monotonic()
    outcome = attacker.run(_script(listeners))
    assert outcome.values.get("done") == "1", str(outcome)
    values = dict(outcome.values)
    values["elapsed"] = str(time.monotonic() - started)
    time.sleep(0.3)  # any connection that got through is accepted by now
    return values


def _connects(got: dict[str, str], prefix: str) -> dict[str, str]:
    return {k: v for k, v in got.items() if k.startswith(prefix) and k.endswith("_connect")}


def test_the_hosts_loopback_services_are_unreachable(
    got: dict[str, str], listeners: dict[str, Listener]
) -> None:
    # Its own lo answers: nothing listens there.
    results = _connects(got, "lo4") | _connects(got, "any")
    assert results and set(results.values()) <= {"ECONNREFUSED", "ENETUNREACH"}, results
    assert listeners["lo4"].accepted == listeners["any"].accepted == []


def test_the_hosts_loopback_services_are_unreachable_over_ipv6(
    got: dict[str, str], listeners: dict[str, Listener]
) -> None:
    results = _connects(got, "lo6")
    assert results and set(results.values()) <= {"ECONNREFUSED", "ENETUNREACH"}, results
    assert listeners["lo6"].accepted == []


def test_the_hosts_own_addresses_are_unreachable(
    got: dict[str, str], listeners: dict[str, Listener]
) -> None:
    if "host4" not in listeners:
        pytest.skip("this host has no global IPv4 address")
    results = _connects(got, "host4")
    assert results and set(results.values()) == {"ENETUNREACH"}, results
    assert listeners["host4"].accepted == []


def test_the_hosts_own_addresses_are_unreachable_over_ipv6(
    got: dict[str, str], listeners: dict[str, Listener]
) -> None:
    if "host6" not in listeners:
        pytest.skip("this host has no global IPv6 address")
    results = _connects(got, "host6")
    assert results and set(results.values()) == {"ENETUNREACH"}, results
    assert listeners["host6"].accepted == []


def test_the_hosts_abstract_unix_sockets_are_unreachable(
    got: dict[str, str], listeners: dict[str, Listener]
) -> None:
    # Abstract unix socket names belong to a network namespace (X11, D-Bus, containerd-shim
    # listened on such names; CVE-2020-15257).
    assert got["abstract_abstract"] == "ECONNREFUSED"
    assert listeners["abstract"].accepted == []


def test_the_metadata_address_is_unreachable(got: dict[str, str]) -> None:
    assert got["metadata4_connect"] == "ENETUNREACH"
    assert got["metadata6_connect"] == "ENETUNREACH"
    assert float(got["elapsed"]) < 30  # refused at once, nothing waited for a timeout


def test_only_loopback_exists_and_there_is_no_route_out(got: dict[str, str]) -> None:
    assert got["links"] == "1"
    assert got["routes4"] == "0" and got["routes6"] == "0"
    assert got["resolv"] == "0"
    assert got["engine_socket"] == "0"


# --- neighbours --------------------------------------------------------------------------------

NEIGHBOUR = (
    "echo secret > /dev/shm/neighbour-secret;"
    " /probe/probe listen-tcp any 8080 5 > /tmp/tcp &"
    " /probe/probe listen-abstract pg-neighbour 5 > /tmp/abstract &"
    " sleep 6; sed 's/^/tcp_/' /tmp/tcp; sed 's/^/unix_/' /tmp/abstract; echo over=1; sleep 600"
)
VISITOR = """
/probe/probe connect 127.0.0.1 8080 | sed 's/^/v4_/'
/probe/probe connect ::1 8080 | sed 's/^/v6_/'
/probe/probe abstract pg-neighbour | sed 's/^/unix_/'
echo shm=$(ls /dev/shm | grep -c neighbour)
echo sleepers=$(ps -o args | grep -c '^sleep 6$')
echo done=1
"""


@pytest.fixture(scope="module")
def neighbours(attacker: Attacker) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    with attacker.started(NEIGHBOUR) as first:
        time.sleep(1.0)
        visitor = attacker.run(VISITOR)
        assert visitor.values.get("done") == "1", str(visitor)
        deadline = time.monotonic() + 20
        while "over=1" not in (logs := attacker.logs(first)).out:
            assert time.monotonic() < deadline, str(logs)
            time.sleep(0.5)
        yield visitor.values, logs.values


def test_two_containers_cannot_reach_each_other_over_tcp(
    neighbours: tuple[dict[str, str], dict[str, str]],
) -> None:
    visitor, first = neighbours
    assert first["tcp_listen"] == "OK"
    assert visitor["v4_connect"] == "ECONNREFUSED"
    assert first["tcp_accepted"] == "0"


def test_two_containers_cannot_reach_each_other_over_ipv6(
    neighbours: tuple[dict[str, str], dict[str, str]],
) -> None:
    visitor, first = neighbours
    assert visitor["v6_connect"] == "ECONNREFUSED"
    assert first["tcp_accepted"] == "0"


def test_two_containers_cannot_reach_each_others_unix_sockets_or_memory(
    neighbours: tuple[dict[str, str], dict[str, str]],
) -> None:
    visitor, first = neighbours
    assert first["unix_listen"] == "OK"
    assert visitor["unix_abstract"] == "ECONNREFUSED"
    assert first["unix_accepted"] == "0"
    assert visitor["shm"] == "0"
    assert visitor["sleepers"] == "0"  # and does not see its processes


def test_vsock_to_the_hypervisor_host_is_denied(attacker: Attacker) -> None:
    # This host's agent listens on vsock; a container must never get a vsock socket.
    outcome = attacker.run("/probe/probe syscalls | grep -E '^(vsock_socket)='")
    assert outcome.values.get("vsock_socket") == "EPERM", str(outcome)
