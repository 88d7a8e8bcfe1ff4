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
