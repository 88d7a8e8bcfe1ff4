"""runtime.volumes without root: parsing names, sizes and -v specs, and the bookkeeping of
unsized (plain directory) volumes against a tmp_path volumes directory."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from runtime.errors import InvalidArgument, VolumeError, VolumeInUse, VolumeNotFound
from runtime.volumes import (
    VolumeSpec,
    VolumeStore,
    disk,
    parse_size,
    parse_volume_spec,
    validate_name,
)
from runtime.volumes.disk import parse_mountinfo

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("100", 100),
        ("100b", 100),
        ("512k", 512 * KiB),
        ("512K", 512 * KiB),
        ("10m", 10 * MiB),
        ("10M", 10 * MiB),
        ("10mb", 10 * MiB),
        ("10MiB", 10 * MiB),
        ("10 m", 10 * MiB),
        ("1g", GiB),
        ("1.5g", GiB + GiB // 2),
        ("0.5k", 512),
        ("2t", 2 << 40),
        ("1p", 1 << 50),
    ],
)
def test_parse_size_uses_binary_multiples(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "m", "abc", "-1", "10x", "1.5.5g", " 10m", "10m ", "1e3", "10  m", "1,5g", "10kk"]
)
def test_parse_size_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_size(text)
    assert info.value.what == "size"
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("data:/x", VolumeSpec("named", "data", "/x", False)),
        ("data:/x:ro", VolumeSpec("named", "data", "/x", True)),
        ("data:/x:rw", VolumeSpec("named", "data", "/x", False)),
        ("my.vol_1-a:/var/lib/db/", VolumeSpec("named", "my.vol_1-a", "/var/lib/db", False)),
        ("/srv/src:/app", VolumeSpec("bind", "/srv/src", "/app", False)),
        ("/srv//src/:/app/./x:ro", VolumeSpec("bind", "/srv/src", "/app/x", True)),
        ("/data", VolumeSpec("anonymous", "", "/data", False)),
        ("//data/", VolumeSpec("anonymous", "", "/data", False)),
    ],
)
def test_parse_volume_spec(spec: str, expected: VolumeSpec) -> None:
    assert parse_volume_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "use NAME:/path"),
        ("data:/x:rx", "invalid mode 'rx'"),
        ("data:/x:", "invalid mode ''"),
        ("data:/x:ro:z", "use NAME:/path"),
        ("data:x", "not an absolute path"),
        ("x", "not an absolute path"),
        ("data:/x/../y", "contains '..'"),
        ("/../etc", "contains '..'"),
        ("/srv/../etc:/x", "contains '..'"),
        ("/x:ro", "a mode needs a source"),
        (":/x", "empty source"),
        ("d@ta:/x", "neither an absolute host path nor a valid volume name"),
        ("./rel:/x", "neither an absolute host path nor a valid volume name"),
        ("a:/x", "neither an absolute host path nor a valid volume name"),
        ("data:/", "destination can't be '/'"),
        ("/", "destination can't be '/'"),
        ("data:/x\0y", "NUL"),
    ],
)
def test_parse_volume_spec_rejects_bad_specs_naming_them(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_volume_spec(spec)
    assert info.value.what == f"volume {spec!r}"
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["ab", "a1", "A.b_c-d", "0db", "x" * 255])
def test_validate_name_accepts_docker_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a", "-ab", ".ab", "_ab", "a/b", "a b", "../x", "é1", "x" * 256]
)
def test_validate_name_rejects_other_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_name(name)


# -- bookkeeping (unsized volumes need no root) --------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(str(tmp_path / "volumes"))


def test_create_makes_a_plain_directory_with_metadata(store: VolumeStore) -> None:
    vol = store.create("data", labels={"owner": "lab-1"})
    assert vol.mountpoint == os.path.join(store.root, "data", "_data")
    assert os.path.isdir(vol.mountpoint)
    assert not os.path.ismount(vol.mountpoint)
    assert (vol.driver, vol.size, vol.labels, vol.options) == (
        "local",
        None,
        {"owner": "lab-1"},
        {},
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", vol.created)
    entries = sorted(os.listdir(os.path.join(store.root, "data")))
    assert entries == ["_data", "volume.json"]  # the atomic write left no temporary file
    meta = json.loads(Path(store.root, "data", "volume.json").read_text())
    assert meta["name"] == "data"
    assert meta["labels"] == {"owner": "lab-1"}


def test_metadata_round_trips_through_a_new_store(store: VolumeStore) -> None:
    created = store.create("data", labels={"a": "1"})
    again = VolumeStore(store.root)
    assert again.get("data") == created
    assert again.list() == [created]
    assert again.mountpoint("data") == created.mountpoint


def test_create_without_a_name_makes_a_64_hex_name(store: VolumeStore) -> None:
    vol = store.create()
    assert re.fullmatch(r"[0-9a-f]{64}", vol.name)
    assert store.get(vol.name) == vol


def test_create_returns_the_existing_volume(store: VolumeStore) -> None:
    first = store.create("data", labels={"a": "1"})
    assert store.create("data") == first
    assert store.create("data", labels={"b": "2"}) == first  # Docker keeps the original


def test_create_refuses_an_existing_name_with_another_size(store: VolumeStore) -> None:
    store.create("data")
    with pytest.raises(InvalidArgument) as info:
        store.create("data", size=16 * MiB)
    assert info.value.what == "size"


def test_create_refuses_bad_names_and_tiny_sizes(store: VolumeStore) -> None:
    with pytest.raises(InvalidArgument):
        store.create("../escape")
    with pytest.raises(InvalidArgument):
        store.create("data", size=4096)
    assert store.list() == []


def test_list_is_sorted_and_skips_what_is_not_a_volume(store: VolumeStore) -> None:
    store.create("bbb")
    store.create("aaa")
    os.mkdir(os.path.join(store.root, "half-made"))  # no metadata
    Path(store.root, "stray.txt").write_text("x")
    assert [v.name for v in store.list()] == ["aaa", "bbb"]


def test_list_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert VolumeStore(str(tmp_path / "nowhere")).list() == []


@pytest.mark.parametrize("name", ["missing", "../volumes", "a/b", ""])
def test_get_of_an_unknown_or_invalid_name_is_not_found(store: VolumeStore, name: str) -> None:
    with pytest.raises(VolumeNotFound):
        store.get(name)
    with pytest.raises(VolumeNotFound):
        store.mountpoint(name)
    with pytest.raises(VolumeNotFound):
        store.remove(name)


def test_remove_deletes_the_directory(store: VolumeStore) -> None:
    vol = store.create("data")
    Path(vol.mountpoint, "file").write_text("x")
    store.remove("data")
    assert not os.path.exists(os.path.join(store.root, "data"))
    assert sorted(os.listdir(store.root)) == [".lock"]
    with pytest.raises(VolumeNotFound):
        store.get("data")


def test_remove_refuses_a_volume_in_use(store: VolumeStore) -> None:
    store.create("data")
    with pytest.raises(VolumeInUse) as info:
        store.remove("data", in_use=lambda n: "c0ffee" * 10 if n == "data" else None)
    assert info.value.container_id == "c0ffee" * 10
    assert store.get("data").name == "data"
    with pytest.raises(VolumeInUse):
        store.remove("data", in_use=lambda n: "c0ffee", force=True)


def test_forced_remove_of_a_missing_volume_is_success(store: VolumeStore) -> None:
    store.remove("missing", force=True)


def test_prune_removes_what_is_not_in_use(store: VolumeStore) -> None:
    for name in ("keep", "drop1", "drop2"):
        store.create(name)
    removed = store.prune(lambda n: "abc" if n == "keep" else None)
    assert sorted(removed) == ["drop1", "drop2"]
    assert [v.name for v in store.list()] == ["keep"]


def test_two_roots_do_not_see_each_other(tmp_path: Path) -> None:
    a = VolumeStore(str(tmp_path / "a"))
    b = VolumeStore(str(tmp_path / "b"))
    a.create("data")
    assert b.list() == []
    b.create("data")
    a.remove("data")
    assert [v.name for v in b.list()] == ["data"]


def test_cleanup_orphans_removes_directories_without_metadata(store: VolumeStore) -> None:
    live = store.create("live")
    orphan = store.create("orphan")
    os.unlink(os.path.join(store.root, "orphan", "volume.json"))
    os.makedirs(os.path.join(store.root, ".removing-0123", "_data"))
    Path(store.root, "stray.txt").write_text("not ours")
    assert sorted(store.cleanup_orphans()) == [".removing-0123", "orphan"]
    assert not os.path.exists(os.path.dirname(orphan.mountpoint))
    assert os.path.isdir(live.mountpoint)
    assert os.path.exists(os.path.join(store.root, "stray.txt"))
    assert store.cleanup_orphans() == []


def test_cleanup_orphans_keeps_a_volume_with_unreadable_metadata(store: VolumeStore) -> None:
    store.create("data")
    Path(store.root, "data", "volume.json").write_text("{not json")
    assert store.cleanup_orphans() == []
    assert os.path.isdir(os.path.join(store.root, "data", "_data"))


def test_create_clears_a_leftover_directory_of_the_same_name(store: VolumeStore) -> None:
    os.makedirs(os.path.join(store.root, "data", "_data"))
    Path(store.root, "data", "_data", "old").write_text("x")
    vol = store.create("data")
    assert os.listdir(vol.mountpoint) == []


@pytest.mark.parametrize(
    ("mkfs", "fragment"), [("false", "mkfs.ext4 failed"), ("no-such-mkfs", "not installed")]
)
def test_a_failed_mkfs_leaves_nothing_behind(
    store: VolumeStore, monkeypatch: pytest.MonkeyPatch, mkfs: str, fragment: str
) -> None:
    monkeypatch.setattr(disk, "MKFS", mkfs)
    with pytest.raises(VolumeError) as info:
        store.create("data", size=16 * MiB)
    assert info.value.name == "data"
    assert fragment in str(info.value)
    assert store.list() == []
    assert sorted(os.listdir(store.root)) == [".lock"]


def test_parse_mountinfo_decodes_escapes_and_propagation() -> None:
    text = (
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "90 22 7:0 / /srv/my\\040vols/x/_data rw,nosuid,nodev - ext4 /dev/loop0 rw,discard\n"
    )
    root, vol = parse_mountinfo(text)
    assert (root.mount_point, root.shared, root.fstype) == ("/", True, "ext4")
    assert vol.mount_point == "/srv/my vols/x/_data"
    assert (vol.source, vol.shared, vol.parent_id, vol.device) == ("/dev/loop0", False, 22, "7:0")
