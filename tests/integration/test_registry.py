"""Pull, push, login and logout against Debian's docker-registry on loopback: plain HTTP,
TLS with htpasswd basic auth, and token auth. Images go in with skopeo (from OCI layouts
built here) and with our own push, and come back out compared file by file."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import NoMatchingPlatform, RegistryError
from runtime.image.store import Image, ImageStore
from runtime.registry import (
    AuthStore,
    PullEvent,
    PushEvent,
    RegistryConfig,
    RegistryHost,
    login,
    logout,
    pull,
    push,
)
from runtime.registry.manifests import host_platform
from tests.integration.oci_layouts import (
    Built,
    build_image,
    index_of,
    make_layer,
    make_tree,
    snapshot_tree,
    write_layout,
)
from tests.integration.registry_support import (
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    htpasswd_file,
    make_pki,
    run_registry,
    run_token_server,
    skopeo_copy,
    skopeo_raw,
)

pytestmark = pytest.mark.registry
PLAIN = RegistryConfig(retries=1, backoff=0.05)


def run_pull(store: ImageStore, ref: str, **kwargs: Any) -> tuple[Image, list[PullEvent]]:
    kwargs.setdefault("config", PLAIN)
    kwargs.setdefault("auth", None)

    async def main() -> list[PullEvent]:
        return [event async for event in pull(store, ref, **kwargs)]

    events = asyncio.run(main())
    assert events[-1].phase == "pulled" and events[-1].image is not None
    return events[-1].image, events


def run_push(store: ImageStore, ref: str, target: str, **kwargs: Any) -> list[PushEvent]:
    kwargs.setdefault("config", PLAIN)
    kwargs.setdefault("auth", None)

    async def main() -> list[PushEvent]:
        return [event async for event in push(store, ref, target, **kwargs)]

    return asyncio.run(main())


def assert_layers_match(store: ImageStore, image: Image, built: Built) -> None:
    assert image.layers == [layer.diff_id for layer in built.layers]
    for layer in built.layers:
        info = store.layers.get(layer.diff_id)
        assert info is not None
        assert snapshot_tree(Path(info.path)) == snapshot_tree(layer.source)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def image(sources: Path) -> tuple[Built, Path]:
    """Three layers: gzip, zstd and uncompressed; and an OCI layout holding them."""
    layers = [
        make_layer(make_tree(sources / f"layer{i}", f"l{i}"), compression)
        for i, compression in enumerate(["gzip", "zstd", "none"])
    ]
    built = build_image(layers)
    write_layout(sources / "layout", "v1", [built])
    return built, sources / "layout"


@pytest.fixture(scope="module")
def multi_arch(sources: Path) -> tuple[dict[str, Built], Path]:
    images: dict[str, Built] = {}
    for arch, variant in (("amd64", ""), ("arm64", "v8")):
        layer = make_layer(make_tree(sources / f"multi-{arch}", arch), "gzip")
        images[arch] = build_image([layer], arch=arch, variant=variant)
    platforms = [
        (images["amd64"], {"os": "linux", "architecture": "amd64"}),
        (images["arm64"], {"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ]
    write_layout(sources / "multi", "v1", list(images.values()), index_of(platforms))
    return images, sources / "multi"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("plain")) as registry:
        yield registry


@pytest.fixture(scope="module")
def seeded(plain: Registry, image: tuple[Built, Path]) -> str:
    """The three-layer image, copied into the plain registry by skopeo."""
    ref = f"{plain.host}/seed/three:v1"
    skopeo_copy(f"oci:{image[1]}:v1", f"docker://{ref}", "--dest-tls-verify=false")
    return ref


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "images"))


# -- plain HTTP -----------------------------------------------------------------------


def test_it_pulls_what_skopeo_pushed_file_by_file(
    store: ImageStore, seeded: str, image: tuple[Built, Path]
) -> None:
    pulled, events = run_pull(store, seeded)
    assert_layers_match(store, pulled, image[0])
    assert pulled.repo_tags == [seeded]
    assert events[-1].digest == pulled.manifest_digest
    digests = list(dict.fromkeys(e.digest for e in events[:-1]))
    assert len(digests) == 3
    for digest in digests:
        phases = [e.phase for e in events if e.digest == digest]
        assert phases[0] == "waiting" and phases[-1] == "done"
        wanted = ["downloading", "verifying", "extracting"]
        assert [p for p in dict.fromkeys(phases) if p in wanted] == wanted


def test_a_second_pull_fetches_no_layer(store: ImageStore, seeded: str) -> None:
    run_pull(store, seeded)
    _, events = run_pull(store, seeded)
    layer_events = [e for e in events if e.phase != "pulled"]
    assert {e.phase for e in layer_events} == {"exists"}
    assert len(layer_events) == 3


def test_it_pulls_by_digest_without_tagging(tmp_path: Path, store: ImageStore, seeded: str) -> None:
    digest = run_pull(store, seeded)[0].manifest_digest
    fresh = ImageStore(str(tmp_path / "fresh"))
    pulled, _ = run_pull(fresh, seeded.rpartition(":")[0] + "@" + digest)
    assert pulled.manifest_digest == digest
    assert pulled.repo_tags == []


def test_it_takes_the_host_platform_from_an_index(
    store: ImageStore, plain: Registry, multi_arch: tuple[dict[str, Built], Path]
) -> None:
    ref = f"{plain.host}/seed/multi:v1"
    skopeo_copy(f"oci:{multi_arch[1]}:v1", f"docker://{ref}", "--dest-tls-verify=false", "--all")
    host = host_platform().architecture
    if host not in multi_arch[0]:
        pytest.skip(f"no image for {host} in the test index")
    pulled, _ = run_pull(store, ref)
    assert pulled.architecture == host
    assert_layers_match(store, pulled, multi_arch[0][host])
    for arch, built in multi_arch[0].items():
        if arch != host:
            assert not store.has_blob(built.layers[0].digest)
            assert not store.has_blob(built.digest)


def test_platform_option_picks_the_other_manifest(
    store: ImageStore, plain: Registry, multi_arch: tuple[dict[str, Built], Path]
) -> None:
    ref = f"{plain.host}/seed/multi2:v1"
    skopeo_copy(f"oci:{multi_arch[1]}:v1", f"docker://{ref}", "--dest-tls-verify=false", "--all")
    pulled, _ = run_pull(store, ref, platform="linux/arm64")
    assert (pulled.os, pulled.architecture) == ("linux", "arm64")
    assert_layers_match(store, pulled, multi_arch[0]["arm64"])
    assert not store.has_blob(multi_arch[0]["amd64"].layers[0].digest)
    with pytest.raises(NoMatchingPlatform, match=r"linux/s390x.*linux/amd64, linux/arm64/v8"):
        run_pull(store, ref, platform="linux/s390x")


def store_image(store: ImageStore, built: Built, tag: str) -> Image:
    """Put a built image straight into a store (as a build would)."""
    for layer in built.layers:
        store.put_blob(layer.blob)
        store.ensure_layer(layer.digest, expected_diff_id=layer.diff_id)
    store.put_blob(built.config)
    digest = store.put_blob(built.manifest)
    return store.add_image(
        json.loads(built.manifest), json.loads(built.config), tags=[tag], manifest_digest=digest
    )


def test_push_round_trip_and_skopeo_reads_it(
    tmp_path: Path, store: ImageStore, plain: Registry, image: tuple[Built, Path]
) -> None:
    store_image(store, image[0], "local/three:v1")
    target = f"{plain.host}/ours/pushed:v2"
    events = run_push(store, "local/three:v1", target)
    assert events[-1].phase == "pushed" and events[-1].digest == image[0].digest
    fresh = ImageStore(str(tmp_path / "fresh"))
    pulled, _ = run_pull(fresh, target)
    assert_layers_match(fresh, pulled, image[0])
    assert skopeo_raw(f"docker://{target}") == image[0].manifest
    skopeo_copy(f"docker://{target}", f"oci:{tmp_path / 'out'}:v2", "--src-tls-verify=false")
    again = run_push(store, "local/three:v1", target)
    assert {e.phase for e in again if e.phase != "pushed"} == {"exists", "waiting"}


def test_push_in_chunks(
    tmp_path: Path, store: ImageStore, plain: Registry, image: tuple[Built, Path]
) -> None:
    store_image(store, image[0], "local/three:v1")
    target = f"{plain.host}/ours/chunked:v1"
    chunked = RegistryConfig(retries=1, backoff=0.05, upload_chunk_size=200)
    run_push(store, "local/three:v1", target, config=chunked)
    fresh = ImageStore(str(tmp_path / "fresh"))
    pulled, _ = run_pull(fresh, target)
    assert_layers_match(fresh, pulled, image[0])


# -- TLS and basic auth ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    directory = tmp_path_factory.mktemp("tls")
    pki = make_pki(directory / "pki")
    auth = {"htpasswd": {"realm": "test", "path": str(htpasswd_file(directory))}}
    with run_registry(directory / "registry", pki=pki, auth=auth) as registry:
        yield registry


def tls_config(registry: Registry, *, with_ca: bool = True) -> RegistryConfig:
    ca = (str(registry.ca_pem),) if with_ca else ()
    return RegistryConfig(
        hosts=(RegistryHost(registry.host, insecure=False, ca_files=ca),), retries=1, backoff=0.05
    )


def test_tls_and_basic_auth_round_trip(
    tmp_path: Path, store: ImageStore, tls: Registry, seeded: str, image: tuple[Built, Path]
) -> None:
    config = tls_config(tls)
    auth = AuthStore(str(tmp_path / "auth.json"))
    with pytest.raises(RegistryError, match="incorrect username or password"):
        asyncio.run(login(tls.host, USER, "wrong", auth, config=config))
    assert not (tmp_path / "auth.json").exists()
    asyncio.run(login(tls.host, USER, PASSWORD, auth, config=config))
    assert stat.S_IMODE(os.stat(tmp_path / "auth.json").st_mode) == 0o600
    saved = json.loads((tmp_path / "auth.json").read_text())
    assert saved == {
        "auths": {
            tls.host: {
                "auth": base64.b64encode(b"%s:%s" % (USER.encode(), PASSWORD.encode())).decode()
            }
        }
    }

    run_pull(store, seeded)
    target = f"{tls.host}/secure/img:v1"
    run_push(store, seeded, target, config=config, auth=auth)
    fresh = ImageStore(str(tmp_path / "fresh"))
    pulled, _ = run_pull(fresh, target, config=config, auth=auth)
    assert_layers_match(fresh, pulled, image[0])

    with pytest.raises(RegistryError, match="pull access denied"):
        run_pull(ImageStore(str(tmp_path / "anon")), target, config=config, auth=None)
    assert logout(tls.host, auth) is True
    assert logout(tls.host, auth) is False


def test_tls_without_the_ca_is_refused(tmp_path: Path, store: ImageStore, tls: Registry) -> None:
    with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED") as info:
        run_pull(store, f"{tls.host}/secure/img:v1", config=tls_config(tls, with_ca=False))
    assert info.value.code == "TLS" and not info.value.temporary


def test_skopeo_pushes_to_tls_and_credentials_never_show(
    tmp_path: Path,
    store: ImageStore,
    tls: Registry,
    image: tuple[Built, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = f"{tls.host}/secure/skopeo:v1"
    skopeo_copy(
        f"oci:{image[1]}:v1",
        f"docker://{target}",
        "--dest-tls-verify=false",
        f"--dest-creds={USER}:{PASSWORD}",
    )
    docker_config = tmp_path / "docker" / "config.json"
    docker_config.parent.mkdir()
    docker_config.write_text(
        json.dumps({"auths": {f"https://{tls.host}": {"username": USER, "password": PASSWORD}}})
    )
    auth = AuthStore(str(tmp_path / "auth.json"), docker_config=str(docker_config))
    caplog.set_level(logging.DEBUG)
    pulled, events = run_pull(store, target, config=tls_config(tls), auth=auth)
    assert_layers_match(store, pulled, image[0])
    run_push(store, target, f"{tls.host}/secure/again:v1", config=tls_config(tls), auth=auth)
    secrets = (PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    shown = [caplog.text, repr(auth), repr(auth.get(tls.host)), repr(events), repr(pulled)]
    for text in shown:
        for secret in secrets:
            assert secret not in text


# -- token auth -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, TokenServer]]:
    directory = tmp_path_factory.mktemp("token")
    pki = make_pki(directory / "pki")
    with (
        run_token_server(pki) as server,
        run_registry(directory / "registry", auth=server.auth_config()) as registry,
    ):
        yield registry, server


def test_token_auth_push_pull_and_login(
    tmp_path: Path,
    store: ImageStore,
    token: tuple[Registry, TokenServer],
    seeded: str,
    image: tuple[Built, Path],
) -> None:
    registry, server = token
    auth = AuthStore(str(tmp_path / "auth.json"))
    run_pull(store, seeded)
    with pytest.raises(RegistryError):
        run_push(store, seeded, f"{registry.host}/public/img:v1", auth=auth)
    with pytest.raises(RegistryError, match="incorrect username or password"):
        asyncio.run(login(registry.host, USER, "nope", auth, config=PLAIN))
    asyncio.run(login(registry.host, USER, PASSWORD, auth, config=PLAIN))
    run_push(store, seeded, f"{registry.host}/public/img:v1", auth=auth)
    run_push(store, seeded, f"{registry.host}/private/img:v1", auth=auth)

    server.requests.clear()
    anonymous = ImageStore(str(tmp_path / "anonymous"))
    pulled, _ = run_pull(anonymous, f"{registry.host}/public/img:v1")
    assert_layers_match(anonymous, pulled, image[0])
    assert len(server.requests) == 1  # one token for the manifest, config and three layers
    assert "account" not in server.requests[0]
    with pytest.raises(RegistryError, match=r"pull access denied for .*private/img"):
        run_pull(anonymous, f"{registry.host}/private/img:v1")

    private = ImageStore(str(tmp_path / "private"))
    pulled, _ = run_pull(private, f"{registry.host}/private/img:v1", auth=auth)
    assert_layers_match(private, pulled, image[0])


def test_push_command_prints_like_docker(
    tmp_path: Path, plain: Registry, image: tuple[Built, Path]
) -> None:
    import argparse
    import io

    from runtime.registry import cli

    root = tmp_path / "root"
    store_image(ImageStore(str(root / "images")), image[0], "local/three:v1")
    target = f"{plain.host}/ours/cli:v3"
    parser = argparse.ArgumentParser()
    cli.add_push_arguments(parser)
    out = io.StringIO()
    assert cli.push_command(parser.parse_args(["local/three:v1", target]), str(root), out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == f"The push refers to repository [{plain.host}/ours/cli]"
    for layer in image[0].layers:
        assert f"{layer.digest[7:19]}: Pushed" in lines
    assert lines[-1] == f"v3: digest: {image[0].digest} size: {len(image[0].manifest)}"
