"""Runtime errors in the site's terms: ``translate`` turns every ``runtime.errors`` error
into an ``ApplicationError`` with a sentence for people and the engine's message for the
log; ``_translated`` does it around a block of engine calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from playground.errors import ApplicationError
from runtime import errors as rt


def _translate_image(exc: rt.ContainerRuntimeError, log: str) -> ApplicationError | None:
    """Errors of pulling an image, as sentences; None for the others."""
    if isinstance(exc, rt.RegistryUnreachable):
        return ApplicationError(
            "The image registry could not be reached. Try again later.",
            log,
            temporary=exc.temporary,
        )
    if isinstance(exc, rt.RegistryError):
        if exc.status in (401, 403):
            return ApplicationError("The image registry refused to send this image.", log)
        if exc.status == 404 or exc.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"):
            return ApplicationError("The image registry has no such image.", log)
        return ApplicationError(
            "The image registry failed to send the image.", log, temporary=exc.temporary
        )
    if isinstance(exc, rt.NoMatchingPlatform):
        return ApplicationError(f"The image {exc.reference} has no version for this host.", log)
    if isinstance(exc, rt.InvalidReference):
        return ApplicationError(f"The image name {exc.reference} is not valid.", log)
    if isinstance(exc, rt.DigestMismatch | rt.BlobSizeMismatch | rt.InvalidLayer | rt.InvalidImage):
        return ApplicationError("The image could not be downloaded intact.", log)
    return None


def translate(exc: rt.ContainerRuntimeError, what: str) -> ApplicationError:
    """A runtime error as a sentence for people, keeping the engine's message for the log."""
    log = f"{what}: {exc}"
    if isinstance(exc, rt.DaemonUnavailable):
        return ApplicationError(
            "The container engine is not answering. Try again in a moment.", log, temporary=True
        )
    if isinstance(exc, rt.ImageNotFound):
        return ApplicationError(f"The image {exc.reference} is not on this host yet.", log)
    if isinstance(exc, rt.ContainerNotFound):
        return ApplicationError("This instance no longer exists.", log)
    if isinstance(exc, rt.InvalidTransition):
        return ApplicationError(f"The instance is {exc.current}: it cannot {exc.wanted}.", log)
    image_error = _translate_image(exc, log)
    if image_error is not None:
        return image_error
    return ApplicationError("The container engine could not do that.", log, temporary=exc.temporary)


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except rt.ContainerRuntimeError as exc:
        raise translate(exc, what) from exc
