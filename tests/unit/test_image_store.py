"""runtime.image.store: blobs, layers unpacked once, the index, resolve, tag, remove, gc."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from runtime.config import EngineConfig
from runtime.errors import (
    BlobNotFound,
    DigestMismatch,
    ImageConflict,
    ImageInUse,
    ImageNotFound,
    ImageStoreError,
    InvalidDigest,
    InvalidImage,
    InvalidLayer,
    InvalidReference,
)
from runtime.image import unpack
from runtime.image.manifest import OCI_LAYER_GZIP
from runtime.image.store import Image, ImageStore
from tests.unit.image_layers import add_image, directory, file, gz, sha256, tar

BASE = tar(directory("bin"), file("bin/sh", b"#!shell\n", 0o755), file("etc/os-release", b"os\n"))
APP = tar(file("app/run", b"run\n", 0o755))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(EngineConfig(str(tmp_path)).images_dir)


@pytest.fixture
def image(store: ImageStore) -> Image:
    return add_image(store, [BASE, APP], tags=["busybox", "busybox:1.36"])


def _tmp_leftovers(store: ImageStore) -> list[str]:
    return os.listdir(os.path.join(store.images_dir, "tmp"))


# -- blobs --------------------------------------------------------------------------------------


def test_its_directories_are_private(store: ImageStore) -> None:
    for sub in ("", "layers", "tmp", "blobs/sha256"):
        assert os.stat(os.path.join(store.images_dir, sub)).st_mode & 0o077 == 0


def test_it_stores_blobs_by_digest_and_verifies_them_on_read(store: ImageStore) -> None:
    digest = store.put_blob(b"hello")
    assert digest == sha256(b"hello")
    assert store.blob_path(digest).endswith("/blobs/sha256/" + digest[7:])
    assert store.has_blob(digest) and store.read_blob(digest) == b"hello"
    Path(store.blob_path(digest)).write_bytes(b"hellO")
    with pytest.raises(DigestMismatch):
        store.read_blob(digest)


def test_it_streams_blobs_in_and_checks_the_expected_digest(store: ImageStore) -> None:
    data = os.urandom(3 << 20)
    assert store.put_blob(io.BytesIO(data), expected=sha256(data)) == sha256(data)
    with pytest.raises(DigestMismatch):
        store.put_blob(io.BytesIO(data + b"!"), expected=sha256(b"other"))
    assert not store.has_blob(sha256(data + b"!")) and _tmp_leftovers(store) == []


def test_it_verifies_streamed_reads_at_the_end(store: ImageStore) -> None:
    digest = store.put_blob(b"x" * 100_000)
    with store.open_blob(digest) as reader:
        assert len(reader.read(10)) == 10
        reader.verify()
    Path(store.blob_path(digest)).write_bytes(b"y" * 100_000)
    with store.open_blob(digest) as reader, pytest.raises(DigestMismatch):
        reader.verify()


@pytest.mark.parametrize("digest", ["sha256:../../etc/passwd", "md5:abc", "sha256:" + "A" * 64])
def test_it_refuses_malformed_digests(store: ImageStore, digest: str) -> None:
    with pytest.raises(InvalidDigest):
        store.has_blob(digest)


def test_filesystem_failures_are_runtime_errors(store: ImageStore) -> None:
    tmp = Path(store.images_dir, "tmp")
    tmp.rmdir()
    tmp.write_bytes(b"not a directory")
    with pytest.raises(ImageStoreError, match="Not a directory"):
        store.put_blob(b"data")


def test_it_reports_missing_blobs(store: ImageStore) -> None:
    with pytest.raises(BlobNotFound):
        store.read_blob(sha256(b"nothing"))


# -- layers -------------------------------------------------------------------------------------


def test_it_unpacks_a_layer_once(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = gz(BASE)
    digest = store.put_blob(blob)
    first = store.ensure_layer(digest, OCI_LAYER_GZIP, expected_diff_id=sha256(BASE))
    assert first.diff_id == sha256(BASE) and Path(first.path, "bin/sh").is_file()
    monkeypatch.setattr("runtime.image.layers.unpack_layer", _fail)
    assert store.ensure_layer(digest) == first


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("unpacked twice")


def test_it_unpacks_once_when_threads_race(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = store.put_blob(gz(BASE))
    calls: list[int] = []
    real = unpack.unpack_layer

    def counting(*args: object, **kwargs: object) -> unpack.UnpackResult:
        calls.append(1)
        time.sleep(0.05)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("runtime.image.layers.unpack_layer", counting)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.ensure_layer(digest)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(map(repr, results))) == 1 and len(results) == 8


def _ensure_in_process(images_dir: str, digest: str, queue: multiprocessing.Queue[str]) -> None:
    queue.put(ImageStore(images_dir).ensure_layer(digest).path)


def test_it_unpacks_once_when_processes_race(store: ImageStore) -> None:
    digest = store.put_blob(gz(tar(*(file(f"f{i}", os.urandom(2000)) for i in range(300)))))
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [
        ctx.Process(target=_ensure_in_process, args=(store.images_dir, digest, queue))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    assert os.listdir(os.path.join(store.images_dir, "layers")) == [os.path.basename(*paths)]
    assert _tmp_leftovers(store) == []


def test_it_checks_the_diff_id_of_a_layer_and_keeps_no_wrong_one(store: ImageStore) -> None:
    digest = store.put_blob(gz(BASE))
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.ensure_layer(digest, expected_diff_id=sha256(APP))
    assert os.listdir(os.path.join(store.images_dir, "layers")) == []
    store.ensure_layer(digest)
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.ensure_layer(digest, expected_diff_id=sha256(APP))


def test_it_refuses_unknown_layer_media_types_and_missing_blobs(store: ImageStore) -> None:
    digest = store.put_blob(gz(BASE))
    with pytest.raises(InvalidLayer, match="media type"):
        store.ensure_layer(digest, "application/vnd.example.layer")
    with pytest.raises(BlobNotFound):
        store.ensure_layer(sha256(b"absent"))


def test_it_leaves_nothing_of_a_hostile_layer(store: ImageStore) -> None:
    digest = store.put_blob(gz(tar(file("../escape"))))
    with pytest.raises(InvalidLayer):
        store.ensure_layer(digest)
    assert os.listdir(os.path.join(store.images_dir, "layers")) == []
    assert _tmp_leftovers(store) == []


def test_layer_paths_are_lowest_first_and_a_repeated_layer_is_kept_highest(
    store: ImageStore,
) -> None:
    image = add_image(store, [BASE, APP, BASE], tags=["x"])
    base, app = (store.layers.path(sha256(BASE)), store.layers.path(sha256(APP)))
    assert store.layer_paths(image) == [app, base]
    assert store.layer_paths(add_image(store, [BASE, APP], tags=["y"])) == [base, app]


# -- images and the index -------------------------------------------------------------------------


def test_it_adds_an_image_and_writes_an_oci_index(store: ImageStore, image: Image) -> None:
    assert image.id == sha256(store.read_blob(image.id))
    assert image.repo_tags == ["busybox:latest", "busybox:1.36"]
    assert image.layers == [sha256(BASE), sha256(APP)]
    assert (image.size, image.architecture, image.os) == (8 + 3 + 4, "amd64", "linux")
    index = json.loads(Path(store.images_dir, "index.json").read_text())
    assert index["schemaVersion"] == 2
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"]
    assert {m["digest"] for m in index["manifests"]} == {image.manifest_digest}


def test_it_refuses_an_image_whose_layers_are_not_unpacked(store: ImageStore) -> None:
    image = add_image(store, [BASE], tags=["a"])
    manifest = store.document(image.manifest_digest)
    config = dict(store.document(image.id))
    config["rootfs"] = {"type": "layers", "diff_ids": [sha256(APP)]}
    config_digest = store.put_blob(json.dumps(config).encode())
    manifest = {**manifest, "config": {**manifest["config"], "digest": config_digest}}
    with pytest.raises(InvalidImage, match="not unpacked"):
        store.add_image(manifest, config, tags=["b"])
    missing = {**manifest, "config": {**manifest["config"], "digest": sha256(b"none")}}
    with pytest.raises(BlobNotFound):
        store.add_image(missing, config, tags=["b"])
    with pytest.raises(InvalidImage, match="2 diff_ids"):
        two = {**config, "rootfs": {"type": "layers", "diff_ids": [sha256(BASE)] * 2}}
        store.put_blob(json.dumps(two).encode())
        store.add_image({**manifest, "config": {**manifest["config"]}}, two, tags=["b"])


@pytest.mark.parametrize(
    "name",
    [
        "busybox",
        "busybox:latest",
        "library/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        "busybox:1.36",
    ],
)
def test_it_resolves_tags_in_every_spelling(store: ImageStore, image: Image, name: str) -> None:
    assert store.resolve(name).id == image.id


def test_it_resolves_ids_and_digests(store: ImageStore, image: Image) -> None:
    hex_id = image.id[7:]
    for text in (image.id, hex_id, hex_id[:4], hex_id[:12], "sha256:" + hex_id[:8]):
        assert store.resolve(text).id == image.id
    assert store.resolve(f"busybox@{image.manifest_digest}").id == image.id
    for text in (hex_id[:3], "sha256:" + "0" * 64, "nothere", "busybox:9"):
        with pytest.raises(ImageNotFound):
            store.resolve(text)
    with pytest.raises(InvalidReference):
        store.resolve("Busybox")


def test_an_ambiguous_id_prefix_is_not_found(store: ImageStore, image: Image) -> None:
    differ = "1" if image.id[15] == "0" else "0"
    twin = "sha256:" + image.id[7:15] + differ * 56  # shares 8 hex digits with the image's id
    index_path = Path(store.images_dir, "index.json")
    index = json.loads(index_path.read_text())
    index["manifests"].append(
        {**index["manifests"][0], "annotations": {"io.playground.image.id": twin}}
    )
    index_path.write_text(json.dumps(index))
    with pytest.raises(ImageNotFound):
        store.resolve(image.id[7:15])
    assert store.resolve(image.id[7:16]).id == image.id


def test_a_second_store_on_the_same_root_sees_changes(store: ImageStore, image: Image) -> None:
    other = ImageStore(store.images_dir)
    assert other.resolve("busybox").id == image.id
    other.tag("busybox", "mine:v1")
    assert store.resolve("mine:v1").id == image.id
    other.untag("mine:v1")
    with pytest.raises(ImageNotFound):
        store.resolve("mine:v1")


def test_two_roots_never_interfere(tmp_path: Path) -> None:
    one = ImageStore(str(tmp_path / "one" / "images"))
    two = ImageStore(str(tmp_path / "two" / "images"))
    add_image(one, [BASE], tags=["busybox"])
    with pytest.raises(ImageNotFound):
        two.resolve("busybox")
    assert two.list() == [] and two.gc().layers == []
    assert len(one.list()) == 1


def _tag_many(images_dir: str, start: int) -> None:
    store = ImageStore(images_dir)
    for i in range(start, start + 20):
        store.tag("busybox", f"t{i}")


def test_concurrent_writers_lose_no_tag(store: ImageStore, image: Image) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tag_many, args=(store.images_dir, n * 100)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert len(store.resolve("busybox").repo_tags) == 2 + 80


def test_resolve_is_cheap(store: ImageStore, image: Image) -> None:
    start = time.perf_counter()
    for _ in range(1000):
        store.resolve("busybox")
        store.layer_paths(image)
    assert time.perf_counter() - start < 0.5  # about 15 us each here


def test_it_lists_images_newest_first(store: ImageStore) -> None:
    old = add_image(store, [BASE], tags=["old"], created="2020-01-01T00:00:00Z")
    new = add_image(store, [APP], tags=["new"], created="2025-01-01T00:00:00Z")
    assert [i.id for i in store.list()] == [new.id, old.id]


# -- tag, untag, remove ---------------------------------------------------------------------------


def test_a_tag_moves_and_leaves_the_old_image_untagged(store: ImageStore, image: Image) -> None:
    other = add_image(store, [APP], tags=["busybox"])
    assert store.resolve("busybox").id == other.id
    assert store.resolve(image.id).repo_tags == ["busybox:1.36"]
    store.untag("busybox:1.36")
    assert store.resolve(image.id).repo_tags == []
    with pytest.raises(ImageNotFound):
        store.untag("busybox:1.36")
    with pytest.raises(InvalidReference, match="digest"):
        store.tag("busybox", f"x@{image.id}")


def test_removing_one_of_several_tags_only_untags(store: ImageStore, image: Image) -> None:
    assert store.remove("busybox:1.36") == ["Untagged: busybox:1.36"]
    assert store.resolve(image.id).repo_tags == ["busybox:latest"]


def test_removing_the_last_tag_deletes_the_image_and_its_layers(
    store: ImageStore, image: Image
) -> None:
    store.untag("busybox:1.36")
    lines = store.remove("busybox")
    assert lines == [
        "Untagged: busybox:latest",
        f"Deleted: {image.id}",
        f"Deleted: {sha256(BASE)}",
        f"Deleted: {sha256(APP)}",
    ]
    assert store.list() == []
    assert os.listdir(os.path.join(store.images_dir, "layers")) == []
    assert os.listdir(os.path.join(store.images_dir, "blobs", "sha256")) == []


def test_removing_an_image_keeps_layers_other_images_use(store: ImageStore, image: Image) -> None:
    add_image(store, [BASE], tags=["base"])
    lines = store.remove(image.id)
    assert lines[:3] == [
        "Untagged: busybox:latest",
        "Untagged: busybox:1.36",
        f"Deleted: {image.id}",
    ]
    assert lines[3:] == [f"Deleted: {sha256(APP)}"]
    assert os.path.isdir(store.layers.path(sha256(BASE)))


def test_an_image_in_use_is_not_removed_without_force(store: ImageStore, image: Image) -> None:
    store.untag("busybox:1.36")

    def in_use(image_id: str) -> str | None:
        return "c0ffee" * 10 if image_id == image.id else None

    with pytest.raises(ImageInUse):
        store.remove("busybox", in_use=in_use)
    with pytest.raises(ImageInUse):
        store.remove(image.id, in_use=in_use)
    assert store.resolve("busybox").id == image.id
    assert store.remove("busybox", force=True, in_use=in_use)[-1] == f"Deleted: {image.id}"
    assert os.path.isdir(store.layers.path(sha256(BASE)))  # the container still needs it
    assert store.gc(keep_images={image.id}).layers == []
    assert sorted(store.gc(keep_images=set()).layers) == sorted([sha256(BASE), sha256(APP)])


def test_layers_of_an_image_removed_while_in_use_survive_other_removals(
    store: ImageStore,
) -> None:
    used = add_image(store, [BASE, APP], tags=["used"])
    other = add_image(store, [BASE], tags=["other"])

    def in_use(image_id: str) -> str | None:
        return "c0ffee" * 10 if image_id == used.id else None

    store.remove("used", force=True, in_use=in_use)
    assert store.remove("other", in_use=in_use) == [
        "Untagged: other:latest",
        f"Deleted: {other.id}",
    ]
    assert all(os.path.isdir(store.layers.path(d)) for d in used.layers)
    assert store.gc(keep_images={used.id}).layers == []
    assert store.gc().layers == []  # containers unknown: kept
    assert sorted(store.gc(keep_images=set()).layers) == sorted(used.layers)


def test_an_id_tagged_in_several_repositories_needs_force(store: ImageStore, image: Image) -> None:
    store.tag("busybox", "other/repo:1")
    with pytest.raises(ImageConflict, match="multiple repositories"):
        store.remove(image.id[7:19])
    lines = store.remove(image.id[7:19], force=True)
    assert len([line for line in lines if line.startswith("Untagged:")]) == 3
    assert f"Deleted: {image.id}" in lines


# -- gc -------------------------------------------------------------------------------------------


def test_gc_removes_unreferenced_content_and_leftovers(store: ImageStore, image: Image) -> None:
    stray = store.put_blob(gz(tar(file("stray"))))
    stray_layer = store.ensure_layer(stray)
    Path(store.images_dir, "tmp", "blob-half-written").write_bytes(b"half")
    Path(store.images_dir, "tmp", "layer-crashed").mkdir()
    Path(store.images_dir, "index.json.tmp-0000").write_bytes(b"{")
    report = store.gc()
    assert report.layers == [stray_layer.diff_id] and report.blobs == [stray]
    assert sorted(report.tmp) == ["blob-half-written", "index.json.tmp-0000", "layer-crashed"]
    assert _tmp_leftovers(store) == []
    assert store.resolve("busybox").id == image.id
    assert all(os.path.isdir(p) for p in store.layer_paths(image))
    assert store.gc().blobs == []


def test_gc_waits_for_leases(store: ImageStore) -> None:
    with store.lease():
        stray = store.put_blob(b"a pull in progress")
        assert store.gc().skipped
    assert store.has_blob(stray)
    assert store.gc().blobs == [stray]
