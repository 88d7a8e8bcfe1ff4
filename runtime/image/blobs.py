"""Content-addressed blobs (``blobs/sha256/<hex>``): layer archives as received, manifests
and configs. A blob is written under ``tmp/`` while it is hashed and renamed in only when
complete, so a blob path either holds the whole content or does not exist; its digest is
checked again on every read."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from types import TracebackType

from runtime.errors import BlobNotFound, DigestMismatch
from runtime.image.digest import check_digest, hex_of, sha256_digest
from runtime.image.locks import fsync_dir, write_all
from runtime.image.stream import CHUNK, Readable

logger = logging.getLogger(__name__)


class BlobReader:
    """A blob's bytes, hashed while read; ``verify`` (or reading to the end) raises
    ``DigestMismatch`` if the file no longer matches its name."""

    def __init__(self, path: str, digest: str) -> None:
        try:
            self._file = open(path, "rb")  # noqa: SIM115  # closed by close()
        except FileNotFoundError as exc:
            raise BlobNotFound(digest) from exc
        self.digest = digest
        self.size = os.fstat(self._file.fileno()).st_size
        self._hasher = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        self._hasher.update(data)
        if size < 0 or not data:
            self._check()
        return data

    def verify(self) -> None:
        """Hash whatever was not read yet and compare."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check(self) -> None:
        actual = "sha256:" + self._hasher.hexdigest()
        if actual != self.digest:
            raise DigestMismatch(self.digest, actual, "stored blob")


class BlobStore:
    def __init__(self, images_dir: str) -> None:
        self.dir = os.path.join(images_dir, "blobs", "sha256")
        self.tmp_dir = os.path.join(images_dir, "tmp")

    def path(self, digest: str) -> str:
        return os.path.join(self.dir, hex_of(digest))

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(digest) from exc

    def put(self, data: bytes | Readable, *, expected: str | None = None) -> str:
        """Store ``data``; returns its digest. A stream is not read at all when ``expected``
        is already stored."""
        return self.put_new(data, expected=expected)[0]

    def put_new(self, data: bytes | Readable, *, expected: str | None = None) -> tuple[str, bool]:
        """``put``, also saying whether the blob was new."""
        if expected is not None:
            check_digest(expected, sha256_only=True)
        if isinstance(data, bytes):
            digest = sha256_digest(data)
            if expected is not None and digest != expected:
                raise DigestMismatch(expected, digest, "blob")
            if self.has(digest):
                return digest, False
        elif expected is not None and self.has(expected):
            return expected, False
        tmp = os.path.join(self.tmp_dir, f"blob-{secrets.token_hex(8)}")
        try:
            digest = self._write(tmp, data)
            if expected is not None and digest != expected:
                raise DigestMismatch(expected, digest, "blob")
            created = not self.has(digest)
            os.rename(tmp, self.path(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fsync_dir(self.dir)
        return digest, created

    def read(self, digest: str) -> bytes:
        with self.open(digest) as reader:
            return reader.read()

    def open(self, digest: str) -> BlobReader:
        return BlobReader(self.path(digest), digest)

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def digests(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return ["sha256:" + name for name in names if len(name) == 64]

    def _write(self, tmp: str, data: bytes | Readable) -> str:
        hasher = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                hasher.update(data)
                write_all(fd, bytes(data))
            else:
                while chunk := data.read(CHUNK):
                    hasher.update(chunk)
                    write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return "sha256:" + hasher.hexdigest()
