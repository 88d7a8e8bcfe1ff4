"""Composable checks for config.json values. A check takes ``(value, path)`` and raises
``InvalidSpec(path, reason)`` for the first bad value; ``path`` is the dotted JSON path of
``value`` ("process.user.uid", "mounts[2].options[0]"). The section modules build tables of
these, so every field we accept is listed in one place and every other field is an error.

JSON ``null`` counts as absent, as it does for the Go structs of the reference runtimes.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, NoReturn

from runtime.errors import InvalidSpec

Check = Callable[[Any, str], None]

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# uid_t/gid_t; (uid_t)-1 means "unchanged" to the kernel, so it is no user.
ID_MAX = 2**32 - 2

NOT_SUPPORTED = "not supported by playground"
UNKNOWN_FIELD = "unknown field, not supported by playground"
# Properties the OCI spec does not define are ignored with a warning (the spec says a runtime
# MUST NOT fail on them); fields it defines that we do not implement are errors.
UNKNOWN_WARNINGS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("unknown_fields")


def _unknown(field: str) -> None:
    warnings = UNKNOWN_WARNINGS.get(None)
    if warnings is None:
        fail(field, UNKNOWN_FIELD)
    warnings.append(f"{field}: unknown property, ignored")


def fail(field: str, reason: str) -> NoReturn:
    raise InvalidSpec(field, reason)


def child(path: str, key: str) -> str:
    """The path of ``key`` in the object at ``path``; keys that are not identifiers are quoted."""
    if not key.isidentifier():
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def obj(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object whose keys all appear in ``fields``, with every ``required`` key present."""

    def check(value: Any, path: str) -> None:
        if type(value) is not dict:
            fail(path, "must be an object")
        for name in required:
            if value.get(name) is None:
                fail(child(path, name), "is required")
        prefix = f"{path}." if path else ""
        for key, entry in value.items():
            field = fields.get(key)
            if field is None:
                _unknown(child(path, key))
                continue
            if entry is not None:
                field(entry, prefix + key)

    return check


def list_of(each: Check, non_empty: bool = False) -> Check:
    def check(value: Any, path: str) -> None:
        if type(value) is not list:
            fail(path, "must be a list")
        if non_empty and not value:
            fail(path, "must not be empty")
        for index, entry in enumerate(value):
            each(entry, f"{path}[{index}]")

    return check


def string(value: Any, path: str) -> None:
    if type(value) is not str:
        fail(path, "must be a string")


def text(value: Any, path: str) -> None:
    """A string that can reach execve or a path syscall, so it must not hold a NUL byte."""
    if type(value) is not str:
        fail(path, "must be a string")
    if "\0" in value:
        fail(path, "must not contain a NUL byte")


def boolean(value: Any, path: str) -> None:
    if type(value) is not bool:
        fail(path, "must be true or false")


def integer(low: int, high: int) -> Check:
    def check(value: Any, path: str) -> None:
        # type() rather than isinstance(): JSON true is not the number 1.
        if type(value) is not int:
            fail(path, "must be an integer")
        if not low <= value <= high:
            fail(path, f"{value} is out of range [{low}, {high}]")

    return check


def absolute_path(value: Any, path: str) -> None:
    text(value, path)
    if not value.startswith("/"):
        fail(path, f"must be an absolute path, not {value!r}")


def one_of(choices: Collection[str], what: str) -> Check:
    expected = ", ".join(sorted(choices))

    def check(value: Any, path: str) -> None:
        if type(value) is not str:
            fail(path, "must be a string")
        if value not in choices:
            fail(path, f"unknown {what} {value!r} (expected one of {expected})")

    return check


def strings(value: Any, path: str) -> None:
    """A list of strings; checked without building a path per item, as lists can be long."""
    if type(value) is not list:
        fail(path, "must be a list")
    for index, entry in enumerate(value):
        if type(entry) is not str or "\0" in entry:
            text(entry, f"{path}[{index}]")


def string_map(value: Any, path: str) -> None:
    if type(value) is not dict:
        fail(path, "must be an object")
    for key, entry in value.items():
        if type(entry) is not str:
            fail(child(path, key), "must be a string")


def environment(value: Any, path: str) -> None:
    """A list of "KEY=value" strings, as execve takes them."""
    strings(value, path)
    for index, entry in enumerate(value):
        if entry.find("=") < 1:
            fail(f"{path}[{index}]", f"must look like KEY=value, not {entry!r}")


def unsupported(reason: str = NOT_SUPPORTED) -> Check:
    def check(value: Any, path: str) -> None:
        fail(path, reason)

    return check
