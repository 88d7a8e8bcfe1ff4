"""Layer and archive byte streams: compression detection, bounded decompression, and the
digests computed on the way (the compressed blob digest and the uncompressed ``diff_id``).

``TarStream`` is what ``tarfile`` reads: a forward-only file over the decompressed bytes
that pretends to be seekable (tarfile only ever seeks forward when members are read in
order), so no temporary copy of a layer is ever made and every byte is hashed exactly once.
Decompression is bounded per read, so a bomb costs at most one chunk of memory before the
byte budget stops it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import logging
import lzma
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO, Protocol, Self, cast

import zstandard

from runtime.image.digest import new_hasher

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
_LZMA_MEMLIMIT = 256 << 20
_ZSTD_MAX_WINDOW = 1 << 27  # zstd's default decoder limit, stated so it cannot grow

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Rejected(Exception):
    """Internal: the stream or archive is refused; callers turn ``reason`` into a runtime error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def detect_compression(head: bytes) -> str:
    """``gzip``, ``zstd``, ``xz``, ``bzip2`` or ``none`` from a stream's first bytes."""
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return "none"


class Source:
    """The raw input: peekable, counting and (optionally) hashing every byte handed out."""

    def __init__(self, raw: Readable, hasher: hashlib._Hash | None) -> None:
        self._raw = raw
        self._pending = b""
        self.hasher = hasher
        self.count = 0
        self.frames: _ZstdFrames | None = None

    def peek(self, size: int) -> bytes:
        while len(self._pending) < size:
            chunk = self._raw.read(size - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:size]

    def read(self, size: int = -1, /) -> bytes:
        if self._pending:
            cut = len(self._pending) if size < 0 else size
            data, self._pending = self._pending[:cut], self._pending[cut:]
        else:
            data = self._raw.read(size)
        self.count += len(data)
        if self.hasher is not None:
            self.hasher.update(data)
        if self.frames is not None:
            self.frames.feed(data)
        return data


class _ZstdFrames:
    """Walks zstd frame and block headers (never the payload) to tell whether the input
    ended at a frame boundary: python-zstandard's reader takes a truncated frame for a
    clean end of stream. Layout from RFC 8878, section 3.1."""

    def __init__(self) -> None:
        self._state = "magic"
        self._header = bytearray()
        self._skip = 0
        self._checksum = False
        self._rest = 0

    @property
    def at_boundary(self) -> bool:
        return self._state == "magic" and not self._header and not self._skip

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self._skip:
                step = min(self._skip, len(data) - i)
                self._skip -= step
                i += step
                continue
            need = self._need() - len(self._header)
            self._header += data[i : i + need]
            i += min(need, len(data) - i)
            if len(self._header) == self._need():
                self._advance(bytes(self._header))
                self._header.clear()

    def _need(self) -> int:
        return {"magic": 4, "skippable": 4, "descriptor": 1, "block": 3, "checksum": 4}.get(
            self._state, self._rest
        )

    def _advance(self, header: bytes) -> None:
        if self._state == "magic":
            (magic,) = struct.unpack("<I", header)
            if magic == 0xFD2FB528:
                self._state = "descriptor"
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state = "skippable"
            else:
                raise Rejected("corrupt zstd stream: bad frame magic")
        elif self._state == "skippable":
            self._skip, self._state = struct.unpack("<I", header)[0], "magic"
        elif self._state == "descriptor":
            self._start_frame(header[0])
        elif self._state == "rest":
            self._state = "block"
        elif self._state == "block":
            (word,) = struct.unpack("<I", header + b"\0")
            kind, size = (word >> 1) & 3, word >> 3
            if kind == 3:
                raise Rejected("corrupt zstd stream: reserved block type")
            self._skip = 1 if kind == 1 else size
            if word & 1:
                self._state = "checksum" if self._checksum else "magic"
        elif self._state == "checksum":
            self._state = "magic"

    def _start_frame(self, descriptor: int) -> None:
        single = bool(descriptor & 0x20)
        fcs = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
        self._checksum = bool(descriptor & 0x04)
        self._rest = (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + fcs
        self._state = "rest" if self._rest else "block"


class _XzReader:
    """xz through ``LZMADecompressor`` with a memory limit (``LZMAFile`` has none), output
    bounded per read; concatenated streams are decoded one after the other."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._decoder = lzma.LZMADecompressor(memlimit=_LZMA_MEMLIMIT)
        self._input = b""

    def read(self, size: int = -1, /) -> bytes:
        while True:
            if self._decoder.eof:
                self._input = self._decoder.unused_data or self._source.read(CHUNK)
                if not self._input:
                    return b""
                self._decoder = lzma.LZMADecompressor(memlimit=_LZMA_MEMLIMIT)
            if self._decoder.needs_input and not self._input:
                self._input = self._source.read(CHUNK)
                if not self._input:
                    raise EOFError("xz stream ended before its end marker")
            out = self._decoder.decompress(self._input, max_length=size)
            self._input = b""
            if out:
                return out


def _open_decoder(source: Source, compression: str) -> Readable:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=cast(IO[bytes], source), mode="rb")  # never seeks
    if compression == "zstd":
        source.frames = _ZstdFrames()
        decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
        return decompressor.stream_reader(
            source,  # type: ignore[arg-type]  # any object with read() works
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )
    if compression == "xz":
        return _XzReader(source)
    if compression == "bzip2":
        return bz2.BZ2File(cast(IO[bytes], source))
    return source


class TarStream:
    """Decompressed bytes, read forward only; ``diff_id`` hashes everything produced."""

    def __init__(self, raw: Readable, *, max_bytes: int, expected_digest: str | None = None):
        self._source = Source(raw, new_hasher(expected_digest) if expected_digest else None)
        self.compression = detect_compression(self._source.peek(6))
        self._decoder = _open_decoder(self._source, self.compression)
        self._max = max_bytes
        self._hasher = hashlib.sha256()
        self._buf = bytearray()
        self._off = 0
        self._pos = 0
        self._eof = False
        self.size = 0

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hasher.hexdigest()

    @property
    def compressed_digest(self) -> str | None:
        hasher = self._source.hasher
        return None if hasher is None else f"{hasher.name}:{hasher.hexdigest()}"

    @property
    def compressed_size(self) -> int:
        return self._source.count

    def tell(self) -> int:
        return self._pos

    def at_end(self) -> bool:
        return self._off == len(self._buf) and not self._fill()

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or position < self._pos:
            raise Rejected("tar stream seeks backwards")
        while self._pos < position and self.read(min(position - self._pos, CHUNK)):
            pass
        return self._pos

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            while self._fill():
                pass
            size = len(self._buf) - self._off
        while len(self._buf) - self._off < size and self._fill():
            pass
        end = min(self._off + size, len(self._buf))
        with memoryview(self._buf) as view:
            data = bytes(view[self._off : end])
        self._advance(end)
        return data

    def copy_to(self, fd: int, size: int) -> int:
        """Write the next ``size`` bytes to ``fd`` without an intermediate copy."""
        done = 0
        while done < size:
            if self._off == len(self._buf) and not self._fill():
                break
            end = min(len(self._buf), self._off + size - done)
            with memoryview(self._buf) as view:
                written = os.write(fd, view[self._off : end])
            done += written
            self._advance(self._off + written)
        return done

    def finish(self) -> None:
        """Read to the end (tar padding, trailing data, the rest of the compressed input),
        so both digests cover the whole stream; refuse a truncated zstd frame."""
        while self.read(CHUNK):
            pass
        while self._source.read(CHUNK):
            pass
        frames = self._source.frames
        if frames is not None and not frames.at_boundary:
            raise Rejected("truncated zstd stream")

    def _advance(self, end: int) -> None:
        self._pos += end - self._off
        self._off = end
        if self._off >= CHUNK:
            del self._buf[: self._off]
            self._off = 0

    def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            chunk = self._decoder.read(CHUNK)
        except _DECODE_ERRORS as exc:
            what = "tar" if self.compression == "none" else self.compression
            raise Rejected(f"corrupt {what} stream: {exc}") from exc
        if not chunk:
            self._eof = True
            return False
        self.size += len(chunk)
        if self.size > self._max:
            raise Rejected(f"more than {self._max} bytes once decompressed")
        self._hasher.update(chunk)
        self._buf += chunk
        return True


# tarfile's header errors are not in typeshed; they are told apart by name.
_END_OF_ARCHIVE = ("EOFHeaderError", "EmptyHeaderError")
_META_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


def _tarinfo_class(max_header: int) -> type[tarfile.TarInfo]:
    """A ``TarInfo`` that refuses a pax or GNU long-name header bigger than ``max_header``
    before tarfile reads it into memory, and a corrupt or truncated header anywhere
    (tarfile takes one after the first member for the end of the archive)."""

    class LimitedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            try:
                info = super().frombuf(buf, encoding, errors)
            except tarfile.HeaderError as exc:
                if type(exc).__name__ in _END_OF_ARCHIVE:
                    raise
                raise Rejected(f"corrupt tar header: {exc}") from exc
            if info.size < 0:
                raise Rejected(f"tar header of {info.name!r} has a negative size")
            if info.type in _META_TYPES and info.size > max_header:
                raise Rejected(f"tar extended header of {info.size} bytes (limit {max_header})")
            return info

    return LimitedTarInfo


def open_tar(stream: TarStream, *, max_header: int) -> tarfile.TarFile | None:
    """A ``TarFile`` reading ``stream`` in order, or None if the stream is empty (an empty
    layer is valid, as in Go's archive/tar)."""
    if stream.at_end():
        return None
    return tarfile.TarFile(
        fileobj=cast(IO[bytes], stream),
        mode="r",
        tarinfo=_tarinfo_class(max_header),
        encoding="utf-8",
        errors="surrogateescape",
    )


def iter_members(tar: tarfile.TarFile | None) -> Iterator[tarfile.TarInfo]:
    """Members in archive order; tarfile's own list of them is emptied as we go, or a
    million-entry layer would keep a million ``TarInfo`` objects alive."""
    while tar is not None:
        info = tar.next()
        if info is None:
            return
        tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
        yield info
