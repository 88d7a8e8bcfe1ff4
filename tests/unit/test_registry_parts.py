"""The registry client's pure parts: configuration, credentials files, challenges,
platforms and manifest kinds."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from runtime.errors import InvalidArgument, InvalidImage, NoMatchingPlatform
from runtime.registry.auth import AuthStore, Credentials
from runtime.registry.bearer import parse_challenges
from runtime.registry.config import RegistryConfig, RegistryHost, is_loopback, load_config
from runtime.registry.login import registry_name
from runtime.registry.manifests import Platform, parse_platform, parse_served, select_platform


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1:5000", True),
        ("127.4.5.6", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("registry.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_registries_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_insecure_registries_get_plain_http() -> None:
    config = RegistryConfig(hosts=(RegistryHost("lab.internal:5000", insecure=True),))
    (hub,) = config.endpoints("docker.io")
    assert (hub.url, hub.verify, hub.fallback_url) == ("https://registry-1.docker.io", True, None)
    (lab,) = config.endpoints("lab.internal:5000")
    assert lab.fallback_url == "http://lab.internal:5000" and not lab.verify
    (local,) = config.endpoints("localhost:5000")
    assert local.fallback_url == "http://localhost:5000"
    secure = config.with_host(RegistryHost("localhost:5000", insecure=False))
    assert secure.endpoints("localhost:5000")[0].fallback_url is None


def test_mirrors_come_first_and_only_for_pulls() -> None:
    host = RegistryHost("docker.io", mirrors=("https://mirror.example/prefix/",))
    config = RegistryConfig(hosts=(host,))
    mirror, origin = config.endpoints("docker.io")
    assert (mirror.url, mirror.mirror) == ("https://mirror.example/prefix", True)
    assert origin.url == "https://registry-1.docker.io"
    assert config.endpoints("docker.io", mirrors=False) == [origin]


def test_registries_json_is_loaded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "registries.json"
    assert load_config(str(path)) == RegistryConfig()
    path.write_text(
        json.dumps(
            {
                "registries": {"r.example": {"mirrors": ["http://m:5000"], "ca_files": ["/ca"]}},
                "read_timeout": 5,
                "max_concurrent_downloads": 2,
            }
        )
    )
    config = load_config(str(path))
    assert config.read_timeout == 5 and config.max_concurrent_downloads == 2
    assert config.host("r.example") == RegistryHost("r.example", ("http://m:5000",), None, ("/ca",))
    for bad in ({"nope": 1}, {"retries": -1}, {"registries": {"x": {"mirrors": ["ftp://x"]}}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(InvalidArgument):
            load_config(str(path))


def test_login_file_is_private_and_docker_shaped(tmp_path: Path) -> None:
    auth = AuthStore(str(tmp_path / "root" / "auth.json"))
    auth.save("docker.io", Credentials("me", "pw:with:colons"))
    auth.save("localhost:5000", Credentials("other", "x"))
    path = tmp_path / "root" / "auth.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    document = json.loads(path.read_text())
    encoded = base64.b64encode(b"me:pw:with:colons").decode()
    assert document["auths"]["https://index.docker.io/v1/"] == {"auth": encoded}
    assert auth.get("index.docker.io") == Credentials("me", "pw:with:colons")
    assert "pw:with" not in repr(auth.get("docker.io"))
    assert auth.remove("docker.io") and not auth.remove("docker.io")
    assert auth.get("docker.io") is None
    assert auth.get("localhost:5000") == Credentials("other", "x")


def test_docker_config_is_read_but_never_written(tmp_path: Path) -> None:
    docker = tmp_path / "config.json"
    encoded = base64.b64encode(b"u:p").decode()
    docker.write_text(json.dumps({"auths": {"https://ghcr.io/v1/": {"auth": encoded}}}))
    auth = AuthStore(str(tmp_path / "auth.json"), docker_config=str(docker))
    assert auth.get("ghcr.io") == Credentials("u", "p")
    docker.write_text(json.dumps({"auths": {"ghcr.io": {"auth": "!!"}}}))
    with pytest.raises(InvalidArgument, match="not base64"):
        auth.get("ghcr.io")


def test_registry_names_are_normalised() -> None:
    assert registry_name("") == "docker.io"
    assert registry_name("https://index.docker.io/v1/") == "docker.io"
    assert registry_name("http://LOCALHOST:5000/") == "localhost:5000"
    with pytest.raises(InvalidArgument):
        registry_name("bad host")


def test_challenges_are_parsed() -> None:
    (bearer,) = parse_challenges(
        ['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"']
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull",
    }
    basic, other = parse_challenges(['Basic realm="r\\"q", Bearer realm=x'])
    assert (basic.scheme, basic.params, other.params) == ("basic", {"realm": 'r"q'}, {"realm": "x"})
    assert parse_challenges([""]) == []


def test_platforms_are_parsed_and_normalised() -> None:
    assert parse_platform("linux/arm64") == Platform("linux", "arm64", "v8")
    assert parse_platform("linux/arm/v6") == Platform("linux", "arm", "v6")
    assert parse_platform("linux/x86_64") == Platform("linux", "amd64")
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(InvalidArgument, match="OS/ARCH"):
            parse_platform(bad)


def _index(*platforms: dict[str, str]) -> bytes:
    manifests = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + f"{n:x}" * 64,
            "size": 10,
            "platform": platform,
        }
        for n, platform in enumerate(platforms, start=1)
    ]
    return json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()


def test_index_entries_are_chosen_by_platform() -> None:
    data = _index(
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm", "variant": "v6"},
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "unknown", "architecture": "unknown"},
    )
    index = parse_served(data, "application/vnd.oci.image.index.v1+json", "x")
    assert index.is_index
    assert select_platform(index, parse_platform("linux/amd64"), "x").digest[7] == "1"
    assert select_platform(index, parse_platform("linux/arm/v7"), "x").digest[7] == "3"
    assert select_platform(index, parse_platform("linux/arm64/v8"), "x").digest[7] == "4"
    with pytest.raises(NoMatchingPlatform, match="linux/ppc64le"):
        select_platform(index, parse_platform("linux/ppc64le"), "x")


def test_manifest_kinds_and_schema1() -> None:
    oci = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    assert not parse_served(oci, "", "x").is_index
    with pytest.raises(InvalidImage, match="schema 1"):
        parse_served(json.dumps({"schemaVersion": 1}).encode(), "", "x")
    with pytest.raises(InvalidImage, match="unsupported manifest media type"):
        parse_served(json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(), "", "x")
