"""The wire format between clients and the daemon, shared by both sides.

A request is one JSON line; the first reply line is ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"type", "message", "attrs"}}``. Streaming operations then carry
more JSON lines (events, logs) or binary frames (attach): one type byte, a 4-byte big-endian
length, the payload.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from runtime import errors

STDIN = 0
STDOUT = 1
STDERR = 2
RESIZE = 3
EXIT = 4
CLOSE_STDIN = 5
REPLAY_DONE = 6

HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 20
MAX_LINE = 1 << 24


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def error_reply(exc: errors.ContainerRuntimeError) -> dict[str, Any]:
    attrs = {
        k: v
        for k, v in vars(exc).items()
        if k != "message" and isinstance(v, str | int | float | bool | type(None))
    }
    return {
        "ok": False,
        "error": {"type": type(exc).__name__, "message": str(exc), "attrs": attrs},
    }


def raise_error(error: dict[str, Any]) -> None:
    """Rebuild the daemon's error as the same ``runtime.errors`` type, and raise it."""
    cls = getattr(errors, str(error.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ContainerRuntimeError)):
        cls = errors.ContainerRuntimeError
    exc = cls.__new__(cls)
    errors.ContainerRuntimeError.__init__(exc, str(error.get("message", "")))
    for key, value in (error.get("attrs") or {}).items():
        setattr(exc, key, value)
    raise exc
