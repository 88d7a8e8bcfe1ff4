"""``push``: upload an image of the store to a registry: its layer blobs (skipping those the
registry has), its config, then its manifest under the target tag.

A blob is uploaded in one ``PUT`` when it is at most ``upload_chunk_size`` bytes, else in
``PATCH`` chunks followed by a closing ``PUT``. A failed upload is retried from scratch (a
new upload session), since a registry's view of a half-sent chunk is unknowable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from runtime.errors import DigestMismatch, InvalidReference, RegistryError
from runtime.image.manifest import OCI_MANIFEST, Descriptor, parse_manifest
from runtime.image.reference import Reference, parse_reference
from runtime.image.store import ImageStore
from runtime.registry.auth import AuthStore
from runtime.registry.config import RegistryConfig
from runtime.registry.download import in_thread
from runtime.registry.progress import EventStream, PushEvent, Report, Throttle, short_id
from runtime.registry.session import RegistrySession, Repository
from runtime.registry.tasks import run_all, using_session
from runtime.registry.transport import error_for

logger = logging.getLogger(__name__)


async def push(
    store: ImageStore,
    image_ref: str,
    target_ref: str | None = None,
    *,
    config: RegistryConfig,
    auth: AuthStore | None,
    session: RegistrySession | None = None,
) -> AsyncIterator[PushEvent]:
    """Push the stored image ``image_ref`` as ``target_ref`` (default: ``image_ref``)."""
    target = parse_reference(target_ref or image_ref)
    if target.digest is not None:
        raise InvalidReference(str(target), "cannot push to a digest reference")

    async def work(emit: Callable[[PushEvent], None]) -> None:
        async with using_session(session, config, auth) as active:
            await _Pusher(store, image_ref, target, active, emit).run()

    async for event in EventStream(work):
        yield event


class _Pusher:
    def __init__(
        self,
        store: ImageStore,
        image_ref: str,
        target: Reference,
        session: RegistrySession,
        emit: Callable[[PushEvent], None],
    ) -> None:
        self.store = store
        self.image_ref = image_ref
        self.target = target
        self.session = session
        self.emit = emit
        endpoint = session.config.endpoints(target.domain, mirrors=False)[-1]
        scope = (f"repository:{target.path}:pull,push",)
        self.repo = Repository(session, endpoint, target.path, scope)

    async def run(self) -> None:
        image = self.store.resolve(self.image_ref)
        manifest_data = await in_thread(self.store.read_blob, image.manifest_digest)
        manifest = json.loads(manifest_data)
        config, layers = parse_manifest(manifest, image.manifest_digest)
        limit = asyncio.Semaphore(max(1, self.session.config.max_concurrent_uploads))
        jobs: list[Awaitable[None]] = []
        for layer in layers:
            self._report(layer)("waiting", 0, layer.size)
            jobs.append(self._upload(layer, limit, self._report(layer)))
        await run_all(jobs)
        await self._upload(config, limit, lambda *_: None)
        tag = self.target.tag or "latest"
        media_type = str(manifest.get("mediaType", OCI_MANIFEST))
        await self._put_manifest(tag, manifest_data, media_type, image.manifest_digest)
        logger.info("pushed %s as %s (%s)", image.id, self.target, image.manifest_digest)
        self.emit(PushEvent(tag, "pushed", digest=image.manifest_digest, total=len(manifest_data)))

    def _report(self, blob: Descriptor) -> Report:
        def report(phase: str, current: int, total: int) -> None:
            self.emit(PushEvent(short_id(blob.digest), phase, current, total, blob.digest))

        return report

    async def _upload(self, blob: Descriptor, limit: asyncio.Semaphore, report: Report) -> None:
        async with limit:
            head = await self.repo.send(
                "HEAD", f"blobs/{blob.digest}", expect=(200, 404), what=f"blob {blob.digest}"
            )
            await head.aclose()
            if head.status_code == 200:
                report("exists", blob.size, blob.size)
                return
            throttled = Throttle(report)
            await self.session.transport.retrying(
                f"upload of {blob.digest}", lambda: self._upload_once(blob, throttled)
            )
            report("done", blob.size, blob.size)

    async def _upload_once(self, blob: Descriptor, report: Report) -> None:
        response = await self.repo.send("POST", "blobs/uploads/", expect=(202,), what="upload")
        await response.aclose()
        location = _location(response)
        chunk = max(1, self.session.config.upload_chunk_size)
        report("pushing", 0, blob.size)
        if blob.size <= chunk:
            data = await in_thread(self.store.read_blob, blob.digest)
            await self._once("PUT", location, data, {"digest": blob.digest}, (201,))
        else:
            location = await self._patch_chunks(blob, location, chunk, report)
            await self._once("PUT", location, b"", {"digest": blob.digest}, (201,))
        report("pushing", blob.size, blob.size)

    async def _patch_chunks(
        self, blob: Descriptor, location: str, chunk: int, report: Report
    ) -> str:
        reader = self.store.open_blob(blob.digest)
        try:
            offset = 0
            while data := await in_thread(reader.read, chunk):
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}",
                }
                response = await self._once("PATCH", location, data, None, (202,), headers)
                location = _location(response)
                offset += len(data)
                report("pushing", offset, blob.size)
        finally:
            reader.close()
        return location

    async def _once(
        self,
        method: str,
        location: str,
        data: bytes,
        params: dict[str, str] | None,
        expect: tuple[int, ...],
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/octet-stream", **(headers or {})}
        if params:  # merged by hand: httpx would drop the upload URL's own query
            location = str(httpx.URL(location).copy_merge_params(params))
        response = await self.repo.send_once(method, location, headers=sent, content=data)
        if response.status_code not in expect:
            raise await error_for(response, f"{method} upload")
        await response.aclose()
        return response

    async def _put_manifest(self, tag: str, data: bytes, media_type: str, digest: str) -> None:
        response = await self.repo.send(
            "PUT",
            f"manifests/{tag}",
            headers={"Content-Type": media_type},
            content=data,
            expect=(200, 201),
            what=f"manifest {self.target}",
        )
        await response.aclose()
        served = response.headers.get("Docker-Content-Digest")
        if served and served.startswith("sha256:") and served != digest:
            raise DigestMismatch(digest, served, f"pushed manifest of {self.target}")


def _location(response: httpx.Response) -> str:
    """The absolute upload URL from a ``Location`` header (which may be relative)."""
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(response.status_code, "NO_LOCATION", "upload: no Location header")
    try:
        return str(response.request.url.join(location))
    except httpx.InvalidURL as exc:
        raise RegistryError(
            response.status_code, "BAD_LOCATION", f"upload: bad Location header {location!r}"
        ) from exc
