"""Every error the runtime raises: one base class and flat, data-carrying subclasses.

Attributes come first; ``__str__`` builds a lowercase message that names the operand.
The CLI and the site turn these into sentences for people.
"""

from __future__ import annotations


class ContainerRuntimeError(Exception):
    """Base of every runtime error. ``temporary`` says whether a retry may succeed."""

    temporary: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidSpec(ContainerRuntimeError):
    """A config.json field is malformed, unsupported or contradictory."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ContainerNotFound(ContainerRuntimeError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} does not exist")
        self.container_id = container_id


class ContainerExists(ContainerRuntimeError):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id!r} already exists")
        self.container_id = container_id


class InvalidContainerId(ContainerRuntimeError):
    def __init__(self, container_id: str) -> None:
        super().__init__(
            f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'"
        )
        self.container_id = container_id


class InvalidTransition(ContainerRuntimeError):
    """An operation is not allowed in the container's current status."""

    def __init__(self, container_id: str, current: str, wanted: str) -> None:
        super().__init__(f"cannot {wanted} container {container_id!r}: it is {current}")
        self.container_id = container_id
        self.current = current
        self.wanted = wanted


class ContainerSetupError(ContainerRuntimeError):
    """The container's init failed while setting up namespaces, mounts or the process."""

    def __init__(self, container_id: str, step: str) -> None:
        super().__init__(f"container {container_id!r}: {step}")
        self.container_id = container_id
        self.step = step


class CgroupError(ContainerRuntimeError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cgroup {path}: {reason}")
        self.path = path
        self.reason = reason


class SeccompError(ContainerRuntimeError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"seccomp: {reason}")
        self.reason = reason


class HookError(ContainerRuntimeError):
    def __init__(self, hook: str, path: str, reason: str) -> None:
        super().__init__(f"{hook} hook {path}: {reason}")
        self.hook = hook
        self.path = path
        self.reason = reason


# -- engine -------------------------------------------------------------------------------


class InvalidReference(ContainerRuntimeError):
    """An image reference that cannot be parsed; ``reason`` says what is wrong with it."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


class ImageNotFound(ContainerRuntimeError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"no such image: {reference}")
        self.reference = reference


class ImageInUse(ContainerRuntimeError):
    def __init__(self, reference: str, container_id: str) -> None:
        super().__init__(
            f"image {reference} is in use by container {container_id[:12]} (use -f to force)"
        )
        self.reference = reference
        self.container_id = container_id


class DigestMismatch(ContainerRuntimeError):
    def __init__(self, expected: str, actual: str, what: str = "blob") -> None:
        super().__init__(f"{what} digest mismatch: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual
        self.what = what


class InvalidLayer(ContainerRuntimeError):
    """A layer or image archive that is malformed or hostile; nothing of it was kept."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"layer {digest}: {reason}")
        self.digest = digest
        self.reason = reason


class InvalidArchive(ContainerRuntimeError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"archive {path}: {reason}")
        self.path = path
        self.reason = reason


class RegistryError(ContainerRuntimeError):
    def __init__(self, status: int, code: str, message: str, *, temporary: bool = False) -> None:
        super().__init__(f"registry error {status} {code}: {message}")
        self.status = status
        self.code = code
        self.temporary = temporary


class NameConflict(ContainerRuntimeError):
    def __init__(self, name: str, owner_id: str) -> None:
        super().__init__(f'the name "{name}" is already in use by {owner_id[:12]}')
        self.name = name
        self.owner_id = owner_id


class AmbiguousId(ContainerRuntimeError):
    def __init__(self, prefix: str) -> None:
        super().__init__(f"multiple containers match id prefix {prefix!r}")
        self.prefix = prefix


class VolumeNotFound(ContainerRuntimeError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such volume: {name}")
        self.name = name


class VolumeInUse(ContainerRuntimeError):
    def __init__(self, name: str, container_id: str) -> None:
        super().__init__(f"volume {name} is in use by container {container_id[:12]}")
        self.name = name
        self.container_id = container_id


class VolumeError(ContainerRuntimeError):
    """Creating, mounting or removing a volume failed (mkfs, loop device, mount, disk)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"volume {name}: {reason}")
        self.name = name
        self.reason = reason


class InvalidArgument(ContainerRuntimeError):
    """A bad flag value or option (a size, a volume spec, a signal...)."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class DaemonUnavailable(ContainerRuntimeError):
    temporary = True

    def __init__(self, socket_path: str, reason: str) -> None:
        super().__init__(f"engine daemon at {socket_path}: {reason}")
        self.socket_path = socket_path
        self.reason = reason


class InvalidDigest(ContainerRuntimeError):
    """A content digest that is not ``<algorithm>:<hex>`` of a supported algorithm."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"invalid digest {digest!r}: {reason}")
        self.digest = digest
        self.reason = reason


class BlobNotFound(ContainerRuntimeError):
    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is not in the image store")
        self.digest = digest


class InvalidImage(ContainerRuntimeError):
    """An image manifest or config that is malformed or does not match its content."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"invalid image {what}: {reason}")
        self.what = what
        self.reason = reason


class ImageConflict(ContainerRuntimeError):
    """Removing an image needs ``force`` (for example: it is tagged in several repositories)."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"conflict: unable to delete {reference} (must be forced): {reason}")
        self.reference = reference
        self.reason = reason


# -- registry ------------------------------------------------------------------------------


class NoMatchingPlatform(ContainerRuntimeError):
    """An image index lists no manifest for the wanted platform."""

    def __init__(self, reference: str, platform: str, available: list[str]) -> None:
        listed = ", ".join(available) or "none"
        super().__init__(
            f"no matching manifest for {platform} in the manifest list entries of {reference}"
            f" (available: {listed})"
        )
        self.reference = reference
        self.platform = platform
        self.available = available


class RegistryUnreachable(RegistryError):
    """No usable HTTP answer: connection refused or reset, a timeout, a TLS failure."""

    def __init__(self, origin: str, code: str, reason: str, *, temporary: bool) -> None:
        super().__init__(0, code, f"{origin}: {reason}", temporary=temporary)
        self.message = f"registry {origin}: {reason}"
        self.origin = origin
        self.reason = reason


class BlobSizeMismatch(ContainerRuntimeError):
    """A registry sent more or fewer bytes than the descriptor's size."""

    def __init__(self, digest: str, expected: int, actual: int) -> None:
        more = "more than" if actual > expected else f"{actual} bytes, not"
        super().__init__(f"blob {digest}: the registry sent {more} the {expected} expected")
        self.digest = digest
        self.expected = expected
        self.actual = actual


class BootstrapError(ContainerRuntimeError):
    """Building a base image from the host (busybox, debootstrap) failed."""

    temporary = True  # usually the package mirror

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"bootstrapping {image}: {reason}")
        self.image = image
        self.reason = reason


class ImageStoreError(ContainerRuntimeError):
    """The image store's files could not be read or written (disk full, permissions...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"image store {path}: {reason}")
        self.path = path
        self.reason = reason
