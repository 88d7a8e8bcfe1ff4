"""Blob downloads into the image store: streamed, size-checked, resumed with HTTP Range
after a broken connection, digest-verified over the whole blob by the store.

The store's ``put_blob`` reads from a ``_Pipe`` in a worker thread (hashing and writing
there, so the event loop only moves bytes), writes under ``tmp/`` and renames the blob in
only when the digest matches. Any failure closes the pipe with an error, which makes
``put_blob`` remove its temporary file: a failed download leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import threading
from collections.abc import Callable
from typing import TypeVar

import httpx

from runtime.errors import BlobSizeMismatch, DigestMismatch, InvalidImage, RegistryError
from runtime.image.digest import new_hasher
from runtime.image.manifest import Descriptor
from runtime.image.store import ImageStore
from runtime.registry.progress import Report
from runtime.registry.session import Repository
from runtime.registry.transport import connection_error, error_for, read_bounded

logger = logging.getLogger(__name__)

HIGH_WATER = 8 << 20  # bytes buffered between the network and the store's writer
READ_BATCH = 1 << 20  # the store's writer is woken for this much, or the end
MAX_SMALL_BLOB = 16 << 20  # image configs
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_T = TypeVar("_T")


class _Aborted(Exception):
    """Raised inside the store's writer when the download failed."""


class _Pipe:
    """Bytes handed from the event loop to a reader in a worker thread, with backpressure."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._pending = 0
        self._closed = False
        self._aborted = False
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Event()
        self._space.set()

    async def write(self, data: bytes) -> None:
        if not data:
            return  # an empty read means the end to the reader
        await self._space.wait()
        with self._cond:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending >= HIGH_WATER:
                self._space.clear()
            if self._pending >= READ_BATCH:
                self._cond.notify()

    def close(self, *, aborted: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._aborted = aborted
            self._cond.notify()

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; waits until that much is buffered (fewer, larger writes
        for the store) or the pipe is closed."""
        with self._cond:
            want = HIGH_WATER if size < 0 else min(size, HIGH_WATER // 2)
            while self._pending < want and not self._closed:
                self._cond.wait()
            if self._aborted:
                raise _Aborted("download failed")
            out = bytearray()
            while self._chunks and (size < 0 or len(out) < size):
                chunk = self._chunks.popleft()
                room = len(chunk) if size < 0 else size - len(out)
                if len(chunk) > room:
                    self._chunks.appendleft(chunk[room:])
                    chunk = chunk[:room]
                out += chunk
            self._pending -= len(out)
            if self._pending < HIGH_WATER // 2 and not self._space.is_set():
                self._loop.call_soon_threadsafe(self._space.set)
            return bytes(out)


async def in_thread(function: Callable[..., _T], *args: object, **kwargs: object) -> _T:
    """``asyncio.to_thread`` that, when cancelled, still waits for the thread to finish, so
    that nothing is left half-written behind a cancelled pull."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait({future})
        raise


async def download_blob(
    repo: Repository, store: ImageStore, blob: Descriptor, report: Report
) -> None:
    """Fetch ``blob`` into ``store``."""
    pipe = _Pipe()
    writer = asyncio.ensure_future(
        asyncio.to_thread(store.put_blob, pipe, expected=blob.digest, media_type=blob.media_type)
    )
    try:
        await _Transfer(repo, blob, pipe, writer, report).run()
    except BaseException:
        pipe.close(aborted=True)
        with contextlib.suppress(BaseException):
            await asyncio.wait({writer})
        if writer.done() and not writer.cancelled() and writer.exception() is not None:
            logger.debug("blob %s: writer stopped: %s", blob.digest, writer.exception())
        raise
    pipe.close()
    report("verifying", blob.size, blob.size)
    await asyncio.wait({writer})
    writer.result()  # DigestMismatch when the bytes were not the blob


class _Transfer:
    """The GET (and ranged re-GETs) of one blob, feeding the pipe."""

    def __init__(
        self,
        repo: Repository,
        blob: Descriptor,
        pipe: _Pipe,
        writer: asyncio.Future[str],
        report: Report,
    ) -> None:
        self.repo = repo
        self.blob = blob
        self.pipe = pipe
        self.writer = writer
        self.report = report
        self.offset = 0

    async def run(self) -> None:
        transport = self.repo.session.transport
        failures, attempts = 0, 0
        limit = transport.config.retries
        while True:
            start = self.offset
            try:
                await self._attempt()
                return
            except RegistryError as exc:
                attempts += 1
                failures = 0 if self.offset > start else failures + 1
                if not exc.temporary or failures > limit or attempts > 8 * (limit + 1):
                    raise
                delay = transport.delay(failures)
                logger.info(
                    "blob %s: %s at byte %d; resuming in %.2fs", self.blob.digest, exc, start, delay
                )
                await asyncio.sleep(delay)

    async def _attempt(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
        response = await self.repo.send(
            "GET",
            f"blobs/{self.blob.digest}",
            headers=headers,
            expect=(200, 206),
            what=f"blob {self.blob.digest}",
        )
        try:
            skip = self._skip(response)
            self._check_length(response, skip)
            async for chunk in response.aiter_raw():
                if self.writer.done():
                    break  # the store had the blob already, or failed
                if skip:
                    chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                await self._feed(chunk)
        except httpx.HTTPError as exc:
            raise connection_error(response.request.url, exc) from exc
        finally:
            await response.aclose()
        if self.writer.done():
            error = self.writer.exception()
            if error is not None:
                raise error
            return
        if self.offset != self.blob.size:
            raise BlobSizeMismatch(self.blob.digest, self.blob.size, self.offset)

    def _skip(self, response: httpx.Response) -> int:
        """Bytes to drop from the body: a server that ignored our Range resends it all."""
        if response.status_code == 200:
            return self.offset
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != self.offset:
            raise RegistryError(
                206, "BAD_RANGE", f"blob {self.blob.digest}: the registry resumed at the wrong byte"
            )
        return 0

    def _check_length(self, response: httpx.Response, skip: int) -> None:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and self.offset + int(declared) - skip > self.blob.size:
            actual = self.offset + int(declared) - skip
            raise BlobSizeMismatch(self.blob.digest, self.blob.size, actual)

    async def _feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.offset + len(chunk) > self.blob.size:
            raise BlobSizeMismatch(self.blob.digest, self.blob.size, self.offset + len(chunk))
        await self.pipe.write(chunk)
        self.offset += len(chunk)
        self.report("downloading", self.offset, self.blob.size)


async def fetch_small_blob(repo: Repository, blob: Descriptor, what: str) -> bytes:
    """A small blob (an image config) read into memory, its size and digest checked."""
    if blob.size > MAX_SMALL_BLOB:
        raise InvalidImage(what, f"{blob.digest} is {blob.size} bytes (limit {MAX_SMALL_BLOB})")

    async def attempt() -> bytes:
        response = await repo.send_once(
            "GET", f"blobs/{blob.digest}", headers={"Accept-Encoding": "identity"}
        )
        if response.status_code != 200:
            raise await error_for(response, f"{what} {blob.digest}")
        return await read_bounded(response, blob.size, f"{what} {blob.digest}")

    try:
        data = await repo.session.transport.retrying(what, attempt)
    except RegistryError as exc:
        if exc.code == "TOO_LARGE":
            raise BlobSizeMismatch(blob.digest, blob.size, blob.size + 1) from exc
        raise
    if len(data) != blob.size:
        raise BlobSizeMismatch(blob.digest, blob.size, len(data))
    hasher = new_hasher(blob.digest)
    hasher.update(data)
    if f"{hasher.name}:{hasher.hexdigest()}" != blob.digest:
        raise DigestMismatch(blob.digest, f"{hasher.name}:{hasher.hexdigest()}", what)
    return data
