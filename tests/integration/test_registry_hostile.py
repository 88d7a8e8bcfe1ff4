"""Registries that lie, break or stall: each case ends in a clear error and leaves nothing
in the store; transient failures are retried, broken transfers resumed, and concurrent
pulls of one image share their downloads."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import (
    BlobSizeMismatch,
    DigestMismatch,
    InvalidImage,
    InvalidLayer,
    RegistryError,
)
from runtime.image.store import Image, ImageStore
from runtime.registry import RegistryConfig, RegistryHost, pull
from runtime.registry.pull import pull_image
from tests.integration.fake_registry import FakeRegistry, run_fake_registry
from tests.integration.oci_layouts import (
    Built,
    Layer,
    build_image,
    compress,
    digest_of,
    make_layer,
    make_tree,
)

pytestmark = pytest.mark.registry
FAST = RegistryConfig(retries=2, backoff=0.01, read_timeout=0.3, connect_timeout=1.0)
REPO = "test/img"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = make_tree(tmp_path_factory.mktemp("src") / "tree", "hostile", big=200_000)
    return build_image([make_layer(source, "gzip")])


@pytest.fixture
def fake(built: Built) -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    registry.add_image(REPO, "v1", built)
    with run_fake_registry(registry) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "images"))


def pull_from(store: ImageStore, ref: str, config: RegistryConfig = FAST) -> Image:
    return asyncio.run(pull_image(store, ref, config=config, auth=None))


def assert_store_empty(store: ImageStore) -> None:
    root = Path(store.images_dir)
    for sub in ("blobs/sha256", "tmp", "layers", "layerdb/sha256", "layerdb/blobs"):
        assert sorted(p.name for p in (root / sub).iterdir()) == [], sub
    index = root / "index.json"
    assert not index.exists() or json.loads(index.read_text())["manifests"] == []


def layer_of(built: Built) -> str:
    return built.layers[0].digest


def test_a_wrong_digest_is_refused(store: ImageStore, fake: FakeRegistry, built: Built) -> None:
    fake.blob_modes[layer_of(built)] = "wrong-digest"
    with pytest.raises(DigestMismatch, match=layer_of(built)):
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert_store_empty(store)


@pytest.mark.parametrize("mode", ["long", "short"])
def test_a_wrong_size_is_refused(
    store: ImageStore, fake: FakeRegistry, built: Built, mode: str
) -> None:
    fake.blob_modes[layer_of(built)] = mode
    with pytest.raises(BlobSizeMismatch, match=layer_of(built)):
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert_store_empty(store)


def test_a_body_that_always_breaks_fails_after_retries(
    store: ImageStore, fake: FakeRegistry, built: Built
) -> None:
    fake.blob_modes[layer_of(built)] = "truncate"
    with pytest.raises(RegistryError, match="peer closed connection") as info:
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert info.value.temporary
    assert fake.count("GET", "blobs/" + layer_of(built)) == 1 + FAST.retries + 1
    assert_store_empty(store)


def test_a_broken_download_resumes_with_range(
    store: ImageStore, fake: FakeRegistry, built: Built
) -> None:
    fake.blob_modes[layer_of(built)] = "truncate-once"
    image = pull_from(store, f"{fake.host}/{REPO}:v1")
    assert image.layers == [built.layers[0].diff_id]
    ranges = [h.get("Range") for m, p, h in fake.requests if layer_of(built) in p]
    assert ranges == [None, f"bytes={len(built.layers[0].blob) // 2}-"]


def test_a_stalled_body_times_out(store: ImageStore, fake: FakeRegistry, built: Built) -> None:
    fake.blob_modes[layer_of(built)] = "stall"
    config = RegistryConfig(retries=1, backoff=0.01, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="read timed out") as info:
        pull_from(store, f"{fake.host}/{REPO}:v1", config)
    assert info.value.code == "TIMEOUT"
    assert time.monotonic() - started < 5
    assert_store_empty(store)


def test_500s_are_retried(store: ImageStore, fake: FakeRegistry, built: Built) -> None:
    fake.failures[f"/v2/{REPO}/manifests/v1"] = 2
    fake.failures[f"/v2/{REPO}/blobs/{layer_of(built)}"] = 2
    image = pull_from(store, f"{fake.host}/{REPO}:v1")
    assert image.layers == [built.layers[0].diff_id]
    assert fake.count("GET", "blobs/" + layer_of(built)) == 3


def test_500s_beyond_the_retries_fail(store: ImageStore, fake: FakeRegistry) -> None:
    fake.failures[f"/v2/{REPO}/manifests/v1"] = 10
    with pytest.raises(RegistryError, match="boom") as info:
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert info.value.status == 500 and info.value.temporary
    assert_store_empty(store)


def test_a_token_endpoint_that_redirects_forever_stops(
    store: ImageStore, fake: FakeRegistry
) -> None:
    fake.token_mode = "redirect"
    with pytest.raises(RegistryError, match="redirects"):
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert fake.count("GET", "^/token") <= 10
    assert_store_empty(store)


def test_useless_tokens_do_not_loop(store: ImageStore, fake: FakeRegistry) -> None:
    fake.token_mode = "useless"
    with pytest.raises(RegistryError, match="pull access denied"):
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert fake.count("GET", "^/token") <= 2
    assert_store_empty(store)


def test_tokens_are_cached(store: ImageStore, fake: FakeRegistry, built: Built) -> None:
    fake.token_mode = "ok"
    pull_from(store, f"{fake.host}/{REPO}:v1")
    assert fake.count("GET", "^/token") == 1


def test_schema1_is_refused(store: ImageStore, fake: FakeRegistry) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": REPO, "tag": "old", "fsLayers": []})
    media_type = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    fake.manifests[f"{REPO}:old"] = (schema1.encode(), media_type)
    with pytest.raises(InvalidImage, match="schema 1 is deprecated and not supported"):
        pull_from(store, f"{fake.host}/{REPO}:old")
    assert_store_empty(store)


def test_an_unknown_tag_says_so(store: ImageStore, fake: FakeRegistry) -> None:
    with pytest.raises(RegistryError, match=r"manifest for .*:nope not found") as info:
        pull_from(store, f"{fake.host}/{REPO}:nope")
    assert info.value.status == 404


def test_a_secure_host_gets_no_plain_http(store: ImageStore, fake: FakeRegistry) -> None:
    config = RegistryConfig(hosts=(RegistryHost(fake.host, insecure=False),), retries=0)
    with pytest.raises(RegistryError) as info:
        pull_from(store, f"{fake.host}/{REPO}:v1", config)
    assert info.value.code == "TLS"
    assert fake.requests == []


def test_a_failing_mirror_falls_back_to_the_registry(
    store: ImageStore, fake: FakeRegistry, built: Built
) -> None:
    with run_fake_registry(FakeRegistry()) as mirror:
        mirror.failures[f"/v2/{REPO}/manifests/v1"] = 100
        host = RegistryHost(fake.host, mirrors=(f"http://{mirror.host}",))
        config = RegistryConfig(hosts=(host,), retries=1, backoff=0.01)
        image = pull_from(store, f"{fake.host}/{REPO}:v1", config)
    assert image.layers == [built.layers[0].diff_id]
    assert mirror.count("GET", "manifests/v1") == 2
    assert fake.count("GET", "manifests/v1") == 1


def test_a_mirror_serves_first(store: ImageStore, fake: FakeRegistry, built: Built) -> None:
    with run_fake_registry(FakeRegistry()) as mirror:
        mirror.add_image(REPO, "v1", built)
        config = RegistryConfig(
            hosts=(RegistryHost(fake.host, mirrors=(f"http://{mirror.host}",)),)
        )
        pull_from(store, f"{fake.host}/{REPO}:v1", config)
    assert mirror.count("GET", "blobs/") == 2
    assert fake.requests == []


def test_concurrent_pulls_share_downloads(
    tmp_path: Path, store: ImageStore, fake: FakeRegistry, built: Built
) -> None:
    fake.delay = 0.2
    ref = f"{fake.host}/{REPO}:v1"

    async def both() -> list[list[Any]]:
        async def one() -> list[Any]:
            return [event async for event in pull(store, ref, config=FAST, auth=None)]

        return await asyncio.gather(one(), one())

    first, second = asyncio.run(both())
    assert first[-1].image.id == second[-1].image.id
    assert fake.count("GET", "blobs/" + layer_of(built)) == 1
    for events in (first, second):
        assert "done" in [e.phase for e in events if e.digest == layer_of(built)]


def test_a_hostile_layer_with_good_digests_leaves_nothing(
    tmp_path: Path, store: ImageStore, fake: FakeRegistry
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../escape")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    raw = buffer.getvalue()
    layer = Layer(tmp_path, "gzip", compress(raw, "gzip"), digest_of(raw))
    fake.add_image(REPO, "evil", build_image([layer]))
    with pytest.raises(InvalidLayer, match="outside the layer"):
        pull_from(store, f"{fake.host}/{REPO}:evil")
    assert_store_empty(store)
    assert not (tmp_path / "escape").exists()


def test_a_wrong_config_is_refused_before_any_layer(
    store: ImageStore, fake: FakeRegistry, built: Built
) -> None:
    fake.blob_modes[digest_of(built.config)] = "wrong-digest"
    with pytest.raises(DigestMismatch, match="image config"):
        pull_from(store, f"{fake.host}/{REPO}:v1")
    assert fake.count("GET", "blobs/" + layer_of(built)) == 0
    assert_store_empty(store)
