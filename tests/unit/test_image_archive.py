"""runtime.image.archive: import of rootfs tarballs, save to an OCI layout (+ Docker's
manifest.json) and load of OCI layouts and `docker save` tars; corrupt archives add nothing."""

from __future__ import annotations

import io
import json
import lzma
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import DigestMismatch, ImageNotFound, InvalidArchive
from runtime.image.archive import import_tarball, load, save
from runtime.image.manifest import OCI_LAYER_TAR, host_architecture
from runtime.image.store import ImageStore
from tests.unit.image_layers import add_image, directory, file, gz, sha256, symlink, tar

BASE = tar(directory("bin"), file("bin/sh", b"#!shell\n", 0o755), symlink("bin/ls", "sh"))
APP = tar(file("app/run", b"run\n", 0o755))


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "a" / "images"))


@pytest.fixture
def other(tmp_path: Path) -> ImageStore:
    return ImageStore(str(tmp_path / "b" / "images"))


def _content(store: ImageStore) -> tuple[list[str], list[str], list[str]]:
    """What the store holds besides bookkeeping: blobs, layers, tmp leftovers."""
    top = store.images_dir
    return (
        sorted(os.listdir(os.path.join(top, "blobs", "sha256"))),
        sorted(os.listdir(os.path.join(top, "layers"))),
        sorted(os.listdir(os.path.join(top, "tmp"))),
    )


def _archive(members: dict[str, bytes | str]) -> bytes:
    """A tar of regular files (bytes) and symlinks (str targets), in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(value, str):
                info.type, info.linkname = tarfile.SYMTYPE, value
                out.addfile(info)
            else:
                info.size = len(value)
                out.addfile(info, io.BytesIO(value))
    return buf.getvalue()


def _config(layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "architecture": host_architecture(),
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        }
    ).encode()


def _docker_save(layers: list[bytes], tags: list[str], config: bytes | None = None) -> bytes:
    """An old-style `docker save`: <id>/layer.tar dirs, a repeated layer as a symlink."""
    config = config or _config(layers)
    members: dict[str, bytes | str] = {"repositories": b"{}"}
    paths = []
    for i, layer in enumerate(layers):
        directory_name = f"{i:064x}"
        first = layers.index(layer)
        if first < i:
            members[f"{directory_name}/layer.tar"] = f"../{first:064x}/layer.tar"
        else:
            members[f"{directory_name}/layer.tar"] = layer
        members[f"{directory_name}/VERSION"] = b"1.0"
        members[f"{directory_name}/json"] = b"{}"
        paths.append(f"{directory_name}/layer.tar")
    members[f"{sha256(config)[7:]}.json"] = config
    manifest = [{"Config": f"{sha256(config)[7:]}.json", "RepoTags": tags, "Layers": paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return _archive(members)


def _oci_layout(blobs: dict[str, bytes], index: dict[str, Any]) -> bytes:
    members: dict[str, bytes | str] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    members.update({f"blobs/sha256/{sha256(b)[7:]}": b for b in blobs.values()})
    members["index.json"] = json.dumps(index).encode()
    return _archive(members)


def _descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


# -- import -------------------------------------------------------------------------------------


def test_import_makes_a_one_layer_image_without_a_command(
    store: ImageStore, tmp_path: Path
) -> None:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gz(BASE))
    image = import_tarball(store, str(path), "imported:v1")
    assert image.repo_tags == ["imported:v1"] and image.layers == [sha256(BASE)]
    assert image.config["config"] == {"Env": [image.config["config"]["Env"][0]]}
    assert image.config["config"]["Env"][0].startswith("PATH=")
    assert image.config["history"][0]["comment"] == "Imported from rootfs.tar.gz"
    assert os.readlink(os.path.join(store.layer_paths(image)[0], "bin/ls")) == "sh"


def test_import_stores_xz_layers_decompressed(store: ImageStore) -> None:
    image = import_tarball(store, io.BytesIO(lzma.compress(BASE)))
    manifest = store.document(image.manifest_digest)
    assert manifest["layers"][0]["mediaType"] == OCI_LAYER_TAR
    assert manifest["layers"][0]["digest"] == sha256(BASE)
    assert image.repo_tags == []


def test_import_of_a_hostile_tarball_leaves_nothing(store: ImageStore, tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    path.write_bytes(tar(symlink("l", "/"), file("l/etc/passwd")))
    with pytest.raises(InvalidArchive, match=r"evil\.tar"):
        import_tarball(store, str(path), "evil")
    assert _content(store) == ([], [], [])
    with pytest.raises(InvalidArchive, match="No such file"):
        import_tarball(store, str(tmp_path / "missing.tar"), "x")


# -- save and load --------------------------------------------------------------------------------


def test_save_then_load_gives_the_same_image(
    store: ImageStore, other: ImageStore, tmp_path: Path
) -> None:
    image = add_image(store, [BASE, APP], tags=["busybox", "busybox:1.36", "ghcr.io/x/y:z"])
    out = tmp_path / "images.tar"
    save(store, ["busybox", "ghcr.io/x/y:z", image.id], str(out))
    with tarfile.open(out) as saved:
        names = saved.getnames()
        index = json.load(saved.extractfile("index.json"))  # type: ignore[arg-type]
        docker = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json", f"blobs/sha256/{image.id[7:]}"} <= set(
        names
    )
    annotations = [m["annotations"] for m in index["manifests"]]
    assert annotations == [
        {
            "io.containerd.image.name": "docker.io/library/busybox:latest",
            "org.opencontainers.image.ref.name": "latest",
        },
        {"io.containerd.image.name": "ghcr.io/x/y:z", "org.opencontainers.image.ref.name": "z"},
    ]
    assert docker[0]["RepoTags"] == ["busybox:latest", "ghcr.io/x/y:z"]
    assert docker[0]["Config"] == f"blobs/sha256/{image.id[7:]}"
    (loaded,) = load(other, str(out))
    assert (loaded.id, loaded.manifest_digest) == (image.id, image.manifest_digest)
    assert loaded.repo_tags == ["busybox:latest", "ghcr.io/x/y:z"]
    assert Path(other.layer_paths(loaded)[1], "app/run").read_bytes() == b"run\n"
    assert _content(other)[2] == []


def test_save_by_id_writes_no_tag_and_can_stream(store: ImageStore, other: ImageStore) -> None:
    image = add_image(store, [BASE], tags=["busybox"])
    out = io.BytesIO()
    save(store, [image.id[7:19]], out)
    (loaded,) = load(other, io.BytesIO(out.getvalue()))
    assert loaded.id == image.id and loaded.repo_tags == []


def test_save_refuses_a_corrupt_blob_and_leaves_no_file(store: ImageStore, tmp_path: Path) -> None:
    image = add_image(store, [BASE], tags=["busybox"])
    layer_blob = store.document(image.manifest_digest)["layers"][0]["digest"]
    Path(store.blob_path(layer_blob)).write_bytes(gz(APP))
    with pytest.raises(DigestMismatch):
        save(store, ["busybox"], str(tmp_path / "out.tar"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out.tar")] == []
    with pytest.raises(ImageNotFound):
        save(store, ["nothere"], str(tmp_path / "out.tar"))
    with pytest.raises(InvalidArchive, match="cannot write"):
        save(store, ["busybox"], str(tmp_path / "no" / "such" / "dir.tar"))


def test_load_reads_an_old_docker_save(store: ImageStore) -> None:
    (image,) = load(store, io.BytesIO(gz(_docker_save([BASE, APP, BASE], ["busybox:old"]))))
    assert image.repo_tags == ["busybox:old"]
    assert image.layers == [sha256(BASE), sha256(APP), sha256(BASE)]
    assert image.config["config"] == {"Cmd": ["sh"]}
    assert len(_content(store)[0]) == 4  # config, manifest, two layers: nothing else kept


def test_load_picks_this_platform_from_an_index(store: ImageStore) -> None:
    blobs: dict[str, bytes] = {}
    manifests = []
    for arch, layer in (("s390x", APP), (host_architecture(), BASE)):
        config = _config([layer])
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", gz(layer))],
            }
        ).encode()
        blobs.update({f"{arch}c": config, f"{arch}l": gz(layer), f"{arch}m": manifest})
        manifests.append(
            _descriptor(
                "application/vnd.oci.image.manifest.v1+json",
                manifest,
                platform={"architecture": arch, "os": "linux"},
            )
        )
    image_index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    ).encode()
    blobs["index"] = image_index
    annotations = {"io.containerd.image.name": "docker.io/library/multi:1"}
    top = {
        "schemaVersion": 2,
        "manifests": [
            _descriptor(
                "application/vnd.oci.image.index.v1+json", image_index, annotations=annotations
            )
        ],
    }
    (image,) = load(store, io.BytesIO(_oci_layout(blobs, top)))
    assert image.repo_tags == ["multi:1"] and image.layers == [sha256(BASE)]
    assert sorted(os.listdir(os.path.join(store.images_dir, "layers"))) == [sha256(BASE)[7:]]


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (b"not an archive at all\n" * 100, "corrupt tar header"),
        (gz(_docker_save([BASE], ["a:b"]))[:300], "gzip|ends inside"),
        (_archive({"hello.txt": b"hi"}), "not an image archive"),
        (
            _archive({"manifest.json": b'[{"Config": "c.json", "Layers": ["l.tar"]}]'}),
            "not in the archive",
        ),
        (_archive({"blobs/sha256/" + "0" * 64: b"lies"}), "digest mismatch"),
        (_archive({"blobs/sha256/../../../etc/passwd": b"x"}), "not an image archive"),
        (_docker_save([BASE], ["a:b"], config=_config([APP])), "diff_id"),
        (_docker_save([tar(file("../x"))], ["a:b"]), "outside the layer"),
        (_docker_save([BASE], ["Bad:Tag"]), "lowercase"),
        (_archive({"index.json": b"{", "oci-layout": b"{}"}), "not valid JSON"),
    ],
    ids=[
        "garbage",
        "truncated",
        "no-metadata",
        "missing-file",
        "lying-blob",
        "dotdot-name",
        "diff-id-mismatch",
        "hostile-layer",
        "bad-tag",
        "bad-json",
    ],
)
def test_load_refuses_corrupt_archives_and_adds_nothing(
    store: ImageStore, tmp_path: Path, archive: bytes, reason: str
) -> None:
    keep = add_image(store, [BASE], tags=["keep"])
    before = _content(store)
    path = tmp_path / "bad.tar"
    path.write_bytes(archive)
    with pytest.raises(InvalidArchive, match=reason) as caught:
        load(store, str(path))
    assert caught.value.path == str(path)
    assert [i.id for i in store.list()] == [keep.id]
    assert _content(store) == before
