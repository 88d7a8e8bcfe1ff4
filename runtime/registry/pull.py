"""``pull``: resolve a reference to one platform's manifest (mirrors first), then fetch the
config and the missing layers (in parallel, bounded) and unpack them, and record the image.

Layers already in the store are neither fetched nor unpacked again. Concurrent pulls in this
process share the work on a blob (the first one does it, the others wait and see its
progress); across processes, the store's atomic blob writes and per-blob unpack locks do the
same. The config and manifest are stored last, so a pull that fails leaves no image, no tag,
and none of its own documents behind; layers completed before the failure stay as cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from runtime.errors import ContainerRuntimeError, InvalidImage, NoMatchingPlatform, RegistryError
from runtime.image.manifest import Descriptor, parse_diff_ids, parse_manifest
from runtime.image.reference import Reference, parse_reference
from runtime.image.store import Image, ImageStore
from runtime.registry.auth import AuthStore
from runtime.registry.bearer import BAD_CREDENTIALS
from runtime.registry.config import RegistryConfig
from runtime.registry.download import download_blob, fetch_small_blob, in_thread
from runtime.registry.manifests import (
    Manifest,
    Platform,
    fetch_manifest,
    host_platform,
    parse_platform,
    select_platform,
)
from runtime.registry.progress import EventStream, PullEvent, Report, Throttle, short_id
from runtime.registry.session import RegistrySession, Repository
from runtime.registry.tasks import run_all, shared, using_session

logger = logging.getLogger(__name__)


async def pull(
    store: ImageStore,
    ref: str,
    *,
    platform: str | None = None,
    config: RegistryConfig,
    auth: AuthStore | None,
    session: RegistrySession | None = None,
) -> AsyncIterator[PullEvent]:
    """Pull ``ref`` into ``store``, yielding progress; the last event carries the image.
    ``platform`` is ``OS/ARCH[/VARIANT]``; this host's platform by default."""
    reference = parse_reference(ref)
    wanted = parse_platform(platform) if platform else None

    async def work(emit: Callable[[PullEvent], None]) -> None:
        async with using_session(session, config, auth) as active:
            await _Puller(store, reference, wanted, active, emit).run()

    async for event in EventStream(work):
        yield event


async def pull_image(store: ImageStore, ref: str, **kwargs: Any) -> Image:
    """``pull`` without the progress: the image."""
    image = None
    async for event in pull(store, ref, **kwargs):
        image = event.image or image
    if image is None:
        raise AssertionError("pull ended without an image")
    return image


class _Puller:
    def __init__(
        self,
        store: ImageStore,
        reference: Reference,
        wanted: Platform | None,
        session: RegistrySession,
        emit: Callable[[PullEvent], None],
    ) -> None:
        self.store = store
        self.reference = reference
        self.wanted = wanted
        self.session = session
        self.emit = emit
        self.what = str(reference)

    async def run(self) -> None:
        with contextlib.ExitStack() as stack:
            # gc holds the lease exclusively while it runs: wait for it off the event loop.
            await in_thread(stack.enter_context, self.store.lease())
            repo, manifest = await self._resolve()
            config_desc, layers = parse_manifest(manifest.document, self.what)
            config_data = await self._config(repo, config_desc)
            config = _json_object(config_data, f"config {config_desc.digest}")
            diff_ids = parse_diff_ids(config, config_desc.digest)
            if len(diff_ids) != len(layers):
                raise InvalidImage(
                    self.what, f"{len(layers)} layers but the config has {len(diff_ids)} diff_ids"
                )
            self._check_platform(config)
            await self._layers(repo, layers, diff_ids)
            image = await in_thread(self._record, manifest, config_desc, config_data)
        logger.info("pulled %s (%s) as image %s", self.what, manifest.digest, image.id)
        self.emit(PullEvent(short_id(image.id), "pulled", digest=manifest.digest, image=image))

    async def _resolve(self) -> tuple[Repository, Manifest]:
        """The image manifest for our platform, from the first endpoint that has it."""
        endpoints = self.session.config.endpoints(self.reference.domain)
        scope = (f"repository:{self.reference.path}:pull",)
        for number, endpoint in enumerate(endpoints):
            repo = Repository(self.session, endpoint, self.reference.path, scope)
            try:
                return repo, await self._manifest(repo)
            except RegistryError as exc:
                if number == len(endpoints) - 1:
                    explained = _explain(exc, self.reference)
                    if explained is exc:
                        raise
                    raise explained from exc
                logger.warning("mirror %s: %s; trying the next endpoint", endpoint.url, exc)
        raise AssertionError("no endpoints")

    async def _manifest(self, repo: Repository) -> Manifest:
        target = self.reference.digest or self.reference.tag or "latest"
        manifest = await fetch_manifest(repo, target, what=self.what)
        if manifest.is_index:
            wanted = self.wanted or host_platform()
            chosen = select_platform(manifest, wanted, self.what)
            logger.debug("%s: %s is %s", self.what, wanted, chosen.digest)
            manifest = await fetch_manifest(repo, chosen.digest, what=self.what)
            if manifest.is_index:
                raise InvalidImage(self.what, "an index inside an index is not supported")
        return manifest

    async def _config(self, repo: Repository, desc: Descriptor) -> bytes:
        if self.store.has_blob(desc.digest):
            return await in_thread(self.store.read_blob, desc.digest)
        return await fetch_small_blob(repo, desc, "image config")

    def _check_platform(self, config: dict[str, Any]) -> None:
        if self.wanted is None:
            return
        found = Platform(
            str(config.get("os", "")),
            str(config.get("architecture", "")),
            str(config.get("variant", "")),
        ).normalized()
        if (found.os, found.architecture) != (self.wanted.os, self.wanted.architecture):
            raise NoMatchingPlatform(self.what, str(self.wanted), [str(found)])

    async def _layers(
        self, repo: Repository, layers: list[Descriptor], diff_ids: list[str]
    ) -> None:
        limit = asyncio.Semaphore(max(1, self.session.config.max_concurrent_downloads))
        jobs: list[Awaitable[None]] = []
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            report = self._reporter(layer)
            if self._present(layer, diff_id):
                report("exists", layer.size, layer.size)
                continue
            report("waiting", 0, layer.size)
            work = _LayerWork(self.store, repo, limit, layer, diff_id)
            jobs.append(shared(self.store.images_dir, layer.digest, work.run, Throttle(report)))
        await run_all(jobs)

    def _reporter(self, layer: Descriptor) -> Report:
        def report(phase: str, current: int, total: int) -> None:
            self.emit(PullEvent(short_id(layer.digest), phase, current, total, layer.digest))

        return report

    def _present(self, layer: Descriptor, diff_id: str) -> bool:
        if not self.store.has_blob(layer.digest):
            return False
        info = self.store.layers.for_blob(layer.digest)
        return info is not None and info.diff_id == diff_id

    def _record(self, manifest: Manifest, config_desc: Descriptor, config_data: bytes) -> Image:
        self.store.put_blob(
            config_data, expected=config_desc.digest, media_type=config_desc.media_type
        )
        self.store.put_blob(manifest.data, expected=manifest.digest, media_type=manifest.media_type)
        tags = [str(self.reference)] if self.reference.digest is None else []
        config = self.store.document(config_desc.digest)
        return self.store.add_image(
            manifest.document, config, tags=tags, manifest_digest=manifest.digest
        )


class _LayerWork:
    """Fetch a layer's blob if missing, then unpack it."""

    def __init__(
        self,
        store: ImageStore,
        repo: Repository,
        limit: asyncio.Semaphore,
        layer: Descriptor,
        diff_id: str,
    ) -> None:
        self.store = store
        self.repo = repo
        self.limit = limit
        self.layer = layer
        self.diff_id = diff_id

    async def run(self, report: Report) -> None:
        layer = self.layer
        if not self.store.has_blob(layer.digest):
            async with self.limit:
                report("downloading", 0, layer.size)
                await download_blob(self.repo, self.store, layer, report)
        report("extracting", layer.size, layer.size)
        try:
            await in_thread(
                self.store.ensure_layer,
                layer.digest,
                layer.media_type,
                expected_diff_id=self.diff_id,
            )
        except ContainerRuntimeError:
            if self.store.layers.for_blob(layer.digest) is None:
                # A blob that does not unpack (hostile, or damaged on disk) is of no use to
                # any image; without it, the next pull fetches it again.
                self.store.blobs.remove(layer.digest)
            raise
        report("done", layer.size, layer.size)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise InvalidImage(what, "not JSON") from exc
    if not isinstance(document, dict):
        raise InvalidImage(what, "not a JSON object")
    return document


def _explain(exc: RegistryError, reference: Reference) -> RegistryError:
    """Docker's wording for the usual pull failures."""
    name = reference.familiar_name
    if exc.status in (401, 403) and exc.code != BAD_CREDENTIALS:
        message = f"pull access denied for {name}, repository does not exist or may require login"
    elif exc.status == 404:
        message = f"manifest for {reference.familiar} not found: {exc.code.lower()}"
    else:
        return exc
    return RegistryError(exc.status, exc.code, message, temporary=exc.temporary)
