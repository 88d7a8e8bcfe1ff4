"""runtime.image.unpack against hostile and well-formed layers.

Every test unpacks into ``tmp_path/store/layer`` next to sentinel files (``store/sibling``,
``outside/sentinel``); the ``jail`` fixture's teardown asserts that nothing outside the
layer directory changed and that no temporary directory was left behind, and a refused
layer must leave no layer directory at all.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import secrets
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import pytest
import zstandard

from runtime.errors import DigestMismatch, InvalidDigest, InvalidLayer
from runtime.image.unpack import Budgets, UnpackResult, unpack_layer
from tests.unit.image_layers import (
    device,
    directory,
    fifo,
    file,
    gz,
    hardlink,
    opaque,
    sha256,
    symlink,
    tar,
    whiteout,
    zst,
)

F = TypeVar("F", bound=Callable[..., None])


def as_root(test: F) -> F:
    """Whiteouts (mknod), trusted xattrs and chown need root."""
    skip = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
    return cast(F, pytest.mark.root(skip(test)))


@dataclass
class Jail:
    top: Path
    dest: Path

    def unpack(self, data: bytes, **kwargs: object) -> UnpackResult:
        return unpack_layer(io.BytesIO(data), str(self.dest), **kwargs)  # type: ignore[arg-type]

    def refuse(self, data: bytes, match: str = "", **kwargs: object) -> InvalidLayer:
        with pytest.raises(InvalidLayer, match=match) as caught:
            self.unpack(data, **kwargs)
        assert not self.dest.exists()
        return caught.value


def _snapshot(top: Path, skip: Path) -> dict[str, tuple[int, int, bytes]]:
    seen: dict[str, tuple[int, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path == skip:
                continue
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):  # creating the layer changes its parent's mtime
                seen[str(path)] = (st.st_mode, 0, b"")
                continue
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            seen[str(path)] = (st.st_mode, st.st_mtime_ns, data)
    return seen


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Jail]:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sentinel").write_text("keep me\n")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "sibling").write_text("sibling\n")
    dest = tmp_path / "store" / "layer"
    before = _snapshot(tmp_path, dest)
    yield Jail(tmp_path, dest)
    assert _snapshot(tmp_path, dest) == before
    assert [p.name for p in (tmp_path / "store").iterdir() if ".tmp-" in p.name] == []


# -- hostile names and links -----------------------------------------------------------------


def test_it_refuses_a_name_climbing_out(jail: Jail) -> None:
    jail.refuse(tar(file("../x")), "outside the layer")


def test_it_refuses_dotdot_climbing_out_from_a_subdirectory(jail: Jail) -> None:
    jail.refuse(tar(file("a/b"), file("a/../../x")), "outside the layer")


def test_it_keeps_absolute_names_inside_the_layer(jail: Jail) -> None:
    name = f"/etc/playground-test-{secrets.token_hex(4)}"
    jail.unpack(tar(file(name, b"inside\n")))
    assert (jail.dest / name.lstrip("/")).read_bytes() == b"inside\n"
    assert not os.path.exists(name)


def test_it_applies_harmless_dotdot_lexically(jail: Jail) -> None:
    jail.unpack(tar(file("a/../b", b"b\n")))
    assert (jail.dest / "b").read_bytes() == b"b\n"


def test_it_refuses_writing_through_a_symlink_to_root(jail: Jail) -> None:
    jail.refuse(tar(symlink("l", "/"), file("l/x")), "symlink")


def test_it_refuses_writing_through_a_relative_symlink_out(jail: Jail) -> None:
    jail.refuse(tar(symlink("l", "../.."), file("l/outside/sentinel", b"owned\n")), "symlink")


def test_it_refuses_a_hardlink_to_a_path_outside(jail: Jail) -> None:
    jail.refuse(tar(hardlink("h", "../outside/sentinel")), "outside the layer")


def test_it_refuses_a_hardlink_through_a_symlink(jail: Jail) -> None:
    layer = tar(symlink("l", "../../outside"), hardlink("h", "l/sentinel"))
    jail.refuse(layer, "symlink")


def test_it_refuses_a_hardlink_to_a_missing_target(jail: Jail) -> None:
    jail.refuse(tar(hardlink("h", "nothing")), "missing")


def test_it_refuses_a_hardlink_to_a_directory(jail: Jail) -> None:
    jail.refuse(tar(directory("d"), hardlink("h", "d")), "directory")


def test_it_refuses_a_directory_replaced_by_a_symlink_then_written_through(jail: Jail) -> None:
    layer = tar(directory("d"), symlink("d", "../../outside"), file("d/sentinel", b"owned\n"))
    jail.refuse(layer, "replace a directory")


def test_it_refuses_a_directory_replaced_by_a_file(jail: Jail) -> None:
    jail.refuse(tar(directory("d"), file("d/x"), file("d")), "replace a directory")


def test_it_refuses_an_entry_under_a_file(jail: Jail) -> None:
    jail.refuse(tar(file("f"), file("f/x")), "not a directory")


def test_it_refuses_a_whiteout_through_a_symlinked_directory(jail: Jail) -> None:
    jail.refuse(tar(symlink("l", "../../outside"), whiteout("l/sentinel")), "symlink")


def test_it_refuses_a_whiteout_of_dotdot(jail: Jail) -> None:
    jail.refuse(tar(directory("a"), file("a/.wh..."), file("a/x")), "not a valid whiteout")


def test_it_refuses_an_opaque_marker_in_a_symlinked_directory(jail: Jail) -> None:
    jail.refuse(tar(symlink("l", "../../outside"), opaque("l")), "symlink")


def test_it_stores_symlink_targets_as_they_are(jail: Jail) -> None:
    jail.unpack(tar(symlink("shadow", "/etc/shadow"), symlink("up", "../../..")))
    assert os.readlink(jail.dest / "shadow") == "/etc/shadow"
    assert os.readlink(jail.dest / "up") == "../../.."


def test_it_hardlinks_to_a_symlink_without_following_it(jail: Jail) -> None:
    jail.unpack(tar(symlink("l", "../../outside/sentinel"), hardlink("h", "l")))
    assert os.readlink(jail.dest / "h") == "../../outside/sentinel"
    assert (jail.dest / "h").lstat().st_ino == (jail.dest / "l").lstat().st_ino


def test_it_replaces_a_file_by_a_later_entry(jail: Jail) -> None:
    jail.unpack(tar(file("f", b"one\n"), file("f", b"two\n"), symlink("f", "elsewhere")))
    assert os.readlink(jail.dest / "f") == "elsewhere"


def test_a_later_entry_never_writes_through_a_hardlink(jail: Jail) -> None:
    jail.unpack(tar(file("a", b"original\n"), hardlink("b", "a"), file("b", b"replaced\n")))
    assert (jail.dest / "a").read_bytes() == b"original\n"
    assert (jail.dest / "b").read_bytes() == b"replaced\n"


def test_it_refuses_an_existing_destination(jail: Jail) -> None:
    jail.dest.mkdir()
    with pytest.raises(InvalidLayer, match="already exists"):
        jail.unpack(tar(file("x")))
    jail.dest.rmdir()


# -- special files, modes, owners, xattrs ----------------------------------------------------


def test_it_skips_device_nodes(jail: Jail) -> None:
    layer = tar(device("dev/null"), device("dev/sda", tarfile.BLKTYPE, 8, 0), fifo("pipe"))
    result = jail.unpack(layer)
    assert result.entries == 3
    assert not (jail.dest / "dev" / "null").exists()
    assert not (jail.dest / "dev" / "sda").exists()
    assert stat.S_ISFIFO((jail.dest / "pipe").lstat().st_mode)


def test_it_keeps_setuid_setgid_and_sticky_bits(jail: Jail) -> None:
    jail.unpack(tar(directory("tmp", 0o1777), directory("g", 0o2755), file("su", mode=0o4755)))
    assert stat.S_IMODE((jail.dest / "su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((jail.dest / "g").stat().st_mode) == 0o2755
    assert stat.S_IMODE((jail.dest / "tmp").stat().st_mode) == 0o1777


@as_root
def test_it_sets_owners_and_keeps_setuid_after_chown(jail: Jail) -> None:
    jail.unpack(tar(file("su", mode=0o4755, uid=1000, gid=1000), directory("d", uid=7, gid=8)))
    st = (jail.dest / "su").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o4755)
    assert ((jail.dest / "d").stat().st_uid, (jail.dest / "d").stat().st_gid) == (7, 8)


def test_it_sets_mtimes_of_directories_after_their_entries(jail: Jail) -> None:
    jail.unpack(tar(directory("d", mtime=1000), file("d/x", mtime=2000), symlink("d/l", "x")))
    assert (jail.dest / "d").stat().st_mtime == 1000
    assert (jail.dest / "d" / "x").stat().st_mtime == 2000
    assert (jail.dest / "d" / "l").lstat().st_mtime == 1_600_000_000


@as_root
def test_it_drops_trusted_and_security_xattrs_and_keeps_user_ones(jail: Jail) -> None:
    info, data = file("f")
    info.pax_headers = {
        "SCHILY.xattr.user.note": "kept",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
    }
    jail.unpack(tar((info, data)))
    assert os.listxattr(jail.dest / "f") == ["user.note"]
    assert os.getxattr(jail.dest / "f", "user.note") == b"kept"


# -- whiteouts ----------------------------------------------------------------------------------


@as_root
def test_it_turns_whiteouts_into_overlayfs_ones(jail: Jail) -> None:
    jail.unpack(tar(directory("a"), whiteout("a/gone"), opaque("o"), file("o/new")))
    st = (jail.dest / "a" / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert not (jail.dest / "a" / ".wh.gone").exists()
    assert os.getxattr(jail.dest / "o", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(jail.dest / "o")) == ["new"]


@as_root
def test_it_makes_a_directory_recreated_over_a_whiteout_opaque(jail: Jail) -> None:
    jail.unpack(tar(whiteout("d"), directory("d"), file("d/x")))
    assert os.getxattr(jail.dest / "d", "trusted.overlay.opaque") == b"y"


@as_root
def test_it_refuses_a_whiteout_of_an_entry_of_the_same_layer(jail: Jail) -> None:
    jail.refuse(tar(file("x"), whiteout("x")), "conflicts")


# -- budgets ----------------------------------------------------------------------------------


def test_it_refuses_a_huge_pax_header(jail: Jail) -> None:
    info, data = file("f")
    info.pax_headers = {"comment": "x" * (2 << 20)}
    jail.refuse(tar((info, data)), "extended header")


def test_it_refuses_too_many_entries(jail: Jail) -> None:
    layer = tar(*(file(f"f{i}") for i in range(11)))
    jail.refuse(layer, "more than 10 entries", budgets=Budgets(max_entries=10))


def test_it_refuses_a_too_deep_path(jail: Jail) -> None:
    jail.refuse(tar(file("a/" * 20 + "x")), "deeper", budgets=Budgets(max_depth=16))


def test_it_refuses_a_too_long_name(jail: Jail) -> None:
    jail.refuse(tar(file("n" * 5000)), "longer than 4096")


def test_it_refuses_a_decompression_bomb(jail: Jail) -> None:
    bomb = gz(tar(file("zeros", b"\0" * (64 << 20))))
    assert len(bomb) < 256 << 10
    jail.refuse(bomb, "bytes once decompressed", budgets=Budgets(max_bytes=8 << 20))


# -- streams and digests ----------------------------------------------------------------------


def test_it_refuses_a_truncated_gzip_stream(jail: Jail) -> None:
    blob = gz(tar(file("a", os.urandom(200_000)), file("b")))
    jail.refuse(blob[: len(blob) // 2], "gzip")


def test_it_refuses_a_truncated_zstd_stream(jail: Jail) -> None:
    blob = zst(tar(file("a", os.urandom(300_000)), file("b")))
    jail.refuse(blob[: len(blob) // 2], "ends inside")


def test_it_refuses_a_zstd_frame_cut_after_the_tar_ends(jail: Jail) -> None:
    # python-zstandard takes a cut frame for a clean end; the frame walker does not.
    layer = tar(file("a", os.urandom(1000)))
    blob = zstandard.ZstdCompressor(write_checksum=True).compress(layer)
    jail.refuse(blob[:-4], "truncated zstd stream")


def test_it_refuses_a_truncated_tar(jail: Jail) -> None:
    layer = tar(file("a", os.urandom(5000)), file("b"))
    jail.refuse(layer[:3000], "ends inside|end of data|truncated")


def test_it_refuses_a_corrupt_tar_header(jail: Jail) -> None:
    layer = bytearray(tar(file("a", b"x" * 600), file("b")))
    layer[1536 + 100] ^= 0xFF  # the second member's mode field: checksum no longer matches
    jail.refuse(bytes(layer), "corrupt tar header")


def test_it_refuses_garbage(jail: Jail) -> None:
    jail.refuse(b"this is not a tar archive\n" * 200, "corrupt tar header")


def test_it_refuses_a_digest_mismatch(jail: Jail) -> None:
    blob = gz(tar(file("a")))
    with pytest.raises(DigestMismatch):
        jail.unpack(blob, expected_digest=sha256(blob + b"!"))
    assert not jail.dest.exists()


def test_it_refuses_a_malformed_expected_digest(jail: Jail) -> None:
    with pytest.raises(InvalidDigest):
        jail.unpack(gz(tar(file("a"))), expected_digest="sha256:../../etc")


def test_it_unpacks_an_uncompressed_layer_and_reports_its_diff_id(jail: Jail) -> None:
    layer = tar(directory("etc"), file("etc/hostname", b"box\n"), file("bin/sh", b"#!"))
    result = jail.unpack(layer, expected_digest=sha256(layer))
    assert result.diff_id == sha256(layer)
    assert (result.size, result.entries, result.content_size) == (len(layer), 3, 6)
    assert (jail.dest / "etc" / "hostname").read_bytes() == b"box\n"


@pytest.mark.parametrize(
    "compress",
    [gz, zst, lzma.compress, bz2.compress],
    ids=["gzip", "zstd", "xz", "bzip2"],
)
def test_it_unpacks_compressed_layers(jail: Jail, compress: object) -> None:
    layer = tar(file("a", os.urandom(100_000)), hardlink("b", "a"))
    blob = compress(layer)  # type: ignore[operator]
    result = jail.unpack(blob, expected_digest=sha256(blob))
    assert result.diff_id == sha256(layer)
    assert (jail.dest / "a").stat().st_ino == (jail.dest / "b").stat().st_ino


def test_it_accepts_an_empty_layer(jail: Jail) -> None:
    result = jail.unpack(b"")
    assert (result.entries, os.listdir(jail.dest)) == (0, [])
    assert stat.S_IMODE(jail.dest.stat().st_mode) == 0o755


def test_it_reads_a_layer_from_a_path(jail: Jail) -> None:
    blob_path = jail.top / "blob"
    blob_path.write_bytes(gz(tar(file("x"))))
    unpack_layer(str(blob_path), str(jail.dest))
    assert (jail.dest / "x").exists()
    blob_path.unlink()
