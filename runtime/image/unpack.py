"""Unpacking one layer archive (tar, gzip, zstd, xz or bzip2) into a new directory, safely.

Nothing here trusts the archive: names are cleaned lexically (a leading "/" is dropped, a
``..`` that climbs out of the layer is refused), entries are created fd-relative by
``layerfs`` (a symlinked parent is refused, never followed), and budgets bound the bytes,
entries, depth and header sizes a hostile layer can make us spend. The layer is built in
``<dest>.tmp-<random>`` and renamed to ``dest`` only when complete and its digests match;
on any failure the temporary directory is removed, so nothing partial is ever left.
``tarfile`` only parses headers: its extraction code (and filters) is never used.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from runtime.errors import DigestMismatch, InvalidLayer
from runtime.image.digest import check_digest
from runtime.image.layerfs import LayerDir, Meta, Parts, remove_tree
from runtime.image.stream import Readable, Rejected, TarStream, iter_members, open_tar

logger = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_XATTR_PAX_PREFIX = "SCHILY.xattr."
# Xattrs a layer may set: user ones and POSIX ACLs. trusted.* (overlayfs' own redirect,
# metacopy and opaque markers among them) and security.* (file capabilities, SELinux
# labels) are privileged and dropped.
_XATTR_ALLOWED = ("user.",)
_XATTR_ALLOWED_NAMES = ("system.posix_acl_access", "system.posix_acl_default")
_ID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown(2)
_MTIME_MAX_NS = 2**62


@dataclass(frozen=True)
class Budgets:
    """What one layer may cost at most."""

    max_bytes: int = 8 << 30  # decompressed tar stream
    max_entries: int = 1_000_000
    max_depth: int = 128  # path components
    max_header: int = 1 << 20  # one pax or GNU long-name header
    max_name: int = 4096  # bytes of a name or link target


DEFAULT_BUDGETS = Budgets()


@dataclass(frozen=True)
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar stream
    size: int  # bytes of the uncompressed tar stream
    entries: int  # tar members, skipped ones included
    content_size: int  # bytes of regular-file content written


def unpack_layer(
    src: Readable | str,
    dest: str,
    *,
    expected_digest: str | None = None,
    budgets: Budgets = DEFAULT_BUDGETS,
) -> UnpackResult:
    """Unpack the layer archive ``src`` (a path or a binary stream) into the new directory
    ``dest``. With ``expected_digest``, the compressed bytes must hash to it
    (``DigestMismatch``); a malformed or hostile layer raises ``InvalidLayer``."""
    label = expected_digest or (src if isinstance(src, str) else "stream")
    if expected_digest is not None:
        check_digest(expected_digest)
    if os.path.lexists(dest):
        raise InvalidLayer(label, f"destination {dest} already exists")
    tmp = f"{dest}.tmp-{secrets.token_hex(8)}"
    os.mkdir(tmp, 0o700)
    try:
        with _opened(src, label) as raw:
            result = _unpack_into(raw, tmp, label, expected_digest, budgets)
        os.rename(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    logger.info("unpacked layer %s (%s) into %s", label, result.diff_id, dest)
    return result


@contextlib.contextmanager
def _opened(src: Readable | str, label: str) -> Iterator[Readable]:
    if not isinstance(src, str):
        yield src
        return
    try:
        f = open(src, "rb")  # noqa: SIM115  # closed below
    except OSError as exc:
        raise InvalidLayer(label, f"cannot open {src}: {exc.strerror}") from exc
    with f:
        yield f


def _unpack_into(
    raw: Readable, tmp: str, label: str, expected: str | None, budgets: Budgets
) -> UnpackResult:
    layer = LayerDir(tmp)
    try:
        stream = TarStream(raw, max_bytes=budgets.max_bytes, expected_digest=expected)
        entries, content = _walk(stream, layer, budgets)
        layer.finish()
        stream.finish()
    except Rejected as exc:
        raise InvalidLayer(label, exc.reason) from exc
    except tarfile.TarError as exc:
        raise InvalidLayer(label, f"corrupt tar: {exc}") from exc
    except OSError as exc:
        raise InvalidLayer(label, f"unpacking: {exc.strerror or exc}") from exc
    finally:
        layer.close()
    actual = stream.compressed_digest
    if expected is not None and actual != expected:
        raise DigestMismatch(expected, actual or "", "layer")
    return UnpackResult(stream.diff_id, stream.size, entries, content)


def _walk(stream: TarStream, layer: LayerDir, budgets: Budgets) -> tuple[int, int]:
    entries = content = 0
    for info in iter_members(open_tar(stream, max_header=budgets.max_header)):
        entries += 1
        if entries > budgets.max_entries:
            raise Rejected(f"more than {budgets.max_entries} entries")
        try:
            content += _apply(info, stream, layer, budgets)
        except OSError as exc:
            raise Rejected(f"{info.name!r}: {exc.strerror or exc}") from exc
    return entries, content


def _apply(info: tarfile.TarInfo, stream: TarStream, layer: LayerDir, budgets: Budgets) -> int:
    """Create one member; returns the bytes of file content written."""
    parts = clean_path(info.name, budgets)
    if info.sparse is not None or info.type == tarfile.GNUTYPE_SPARSE:
        raise Rejected(f"{info.name!r}: sparse files are not supported")
    if parts and parts[-1].startswith(WHITEOUT_PREFIX):
        _whiteout(parts, info, layer)
        return 0
    meta = _meta(info)
    if info.isreg():
        layer.add_file(parts, meta, lambda fd: _copy(stream, info, fd))
        return info.size
    if info.isdir():
        layer.add_dir(parts, meta)
    elif info.issym():
        _check_name(info.linkname, budgets)
        layer.add_symlink(parts, info.linkname, meta)
    elif info.islnk():
        layer.add_hardlink(parts, clean_path(info.linkname, budgets))
    elif info.isfifo():
        layer.add_fifo(parts, meta)
    elif info.ischr() or info.isblk():
        logger.debug("skipping device node %r", info.name)
    else:
        raise Rejected(f"{info.name!r}: unsupported tar entry type {info.type!r}")
    return 0


def clean_path(name: str, budgets: Budgets) -> Parts:
    """The components of an archive name inside the layer: a leading "/" and "." dropped,
    ".." applied lexically (as Docker does) and refused where it would climb out."""
    _check_name(name, budgets)
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component != "..":
            parts.append(component)
        elif parts:
            parts.pop()
        else:
            raise Rejected(f"{name!r} points outside the layer")
    if len(parts) > budgets.max_depth:
        raise Rejected(f"{name[:200]!r} is deeper than {budgets.max_depth} components")
    return tuple(parts)


def _check_name(name: str, budgets: Budgets) -> None:
    if "\0" in name:
        raise Rejected(f"{name!r} contains a NUL byte")
    if len(os.fsencode(name)) > budgets.max_name:
        raise Rejected(f"name {name[:200]!r}... is longer than {budgets.max_name} bytes")


def _whiteout(parts: Parts, info: tarfile.TarInfo, layer: LayerDir) -> None:
    base = parts[-1]
    if base == WHITEOUT_OPAQUE:
        layer.set_opaque(parts[:-1])
    elif base.startswith(WHITEOUT_META_PREFIX):
        logger.debug("skipping whiteout metadata %r", info.name)
    else:
        deleted = base[len(WHITEOUT_PREFIX) :]
        if deleted in ("", ".", ".."):
            raise Rejected(f"{info.name!r} is not a valid whiteout")
        layer.add_whiteout((*parts[:-1], deleted), _meta(info))


def _meta(info: tarfile.TarInfo) -> Meta:
    for owner in (info.uid, info.gid):
        if not 0 <= owner <= _ID_MAX:
            raise Rejected(f"{info.name!r}: owner id {owner} out of range")
    xattrs: dict[str, bytes] = {}
    for key, value in info.pax_headers.items():
        if not key.startswith(_XATTR_PAX_PREFIX):
            continue
        name = key[len(_XATTR_PAX_PREFIX) :]
        if name.startswith(_XATTR_ALLOWED) or name in _XATTR_ALLOWED_NAMES:
            xattrs[name] = value.encode("utf-8", "surrogateescape")
        else:
            logger.debug("dropping xattr %s of %r", name, info.name)
    return Meta(info.mode & 0o7777, info.uid, info.gid, _mtime_ns(info.mtime), xattrs)


def _mtime_ns(mtime: float) -> int:
    if isinstance(mtime, int):
        ns = mtime * 1_000_000_000
    elif math.isfinite(mtime):
        ns = int(mtime * 1_000_000_000)
    else:
        ns = 0
    return max(-_MTIME_MAX_NS, min(ns, _MTIME_MAX_NS))


def _copy(stream: TarStream, info: tarfile.TarInfo, fd: int) -> None:
    stream.seek(info.offset_data)
    if stream.copy_to(fd, info.size) != info.size:
        raise Rejected(f"{info.name!r}: archive ends inside its data")
